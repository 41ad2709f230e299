"""The code blocks of a markdown file, and the shell commands in them.

``tests/test_readme.py`` runs what README.md shows; this module only reads it. Fenced
blocks carry their language (```` ```bash ````, ```` ```yaml ````, ```` ```python ````,
```` ```text ````; an unlabelled fence is ``""``); an indented block (four spaces after a blank line, outside
a fence) counts as a command block, as the README uses them for commands.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^```\s*([A-Za-z0-9_+-]*)\s*$")
SHELL_OPERATORS = {"&&", "||", ";", "|", ">", ">>", "<", "2>"}


@dataclass(frozen=True)
class Block:
    """One code block: ``kind`` is the fence's language or ``indented``."""

    kind: str
    text: str
    line: int
    heading: str


@dataclass(frozen=True)
class Command:
    """One shell command of a block: ``key`` is its tokens re-joined (comments and
    spacing dropped), which names it in the test's lists."""

    text: str
    line: int
    block: Block
    tokens: list[str] = field(hash=False)

    @property
    def key(self) -> str:
        return " ".join(self.tokens)

    @property
    def background(self) -> bool:
        return self.tokens[-1] == "&"

    @property
    def env(self) -> dict[str, str]:
        """Leading ``NAME=value`` assignments."""
        out = {}
        for token in self.tokens:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", token):
                break
            name, value = token.split("=", 1)
            out[name] = value
        return out

    @property
    def argv(self) -> list[str]:
        """The program and its arguments: no env prefix, no trailing ``&``."""
        argv = self.tokens[len(self.env):]
        return argv[:-1] if argv and argv[-1] == "&" else argv

    @property
    def needs_shell(self) -> bool:
        """Redirections or command lists: bash runs the text as written."""
        return any(t in SHELL_OPERATORS for t in self.tokens)

    @property
    def redirect_targets(self) -> list[str]:
        return [self.tokens[i + 1] for i, t in enumerate(self.tokens[:-1]) if t in (">", ">>")]


def read_blocks(text: str) -> list[Block]:
    """Every fenced and indented code block, in order, with the heading above it."""
    blocks: list[Block] = []
    lines = text.splitlines()
    heading, i = "", 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if fence:
            end = i + 1
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            if end == len(lines):
                raise ValueError(f"line {i + 1}: a code fence is never closed")
            blocks.append(Block(fence.group(1), "\n".join(lines[i + 1:end]) + "\n", i + 2,
                                heading))
            i = end + 1
            continue
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("    ") and line.strip() and (i == 0 or not lines[i - 1].strip()):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            body = [raw[4:] for raw in lines[i:end]]
            while body and not body[-1].strip():
                body.pop()
            blocks.append(Block("indented", "\n".join(body) + "\n", i + 1, heading))
            i = end
            continue
        i += 1
    return blocks


def read_commands(block: Block) -> list[Command]:
    """The commands of a shell block: backslash continuations joined, blank and
    comment-only lines dropped."""
    commands = []
    pending, start = "", 0
    for offset, raw in enumerate(block.text.splitlines()):
        if not pending:
            start = block.line + offset
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        text = (pending + raw).strip()
        pending = ""
        try:
            tokens = shlex.split(text, comments=True)
        except ValueError as err:
            raise ValueError(f"README line {start}: cannot split {text!r}: {err}") from None
        if tokens:
            commands.append(Command(text, start, block, tokens))
    return commands


PY_FILE = re.compile(r"# ([\w./-]+\.py)\n")


def python_file(block: Block) -> str | None:
    """The file a ``python`` block is saved as when its first line is ``# NAME.py`` (a
    module the blocks after it import); None for a block that runs as a script."""
    match = PY_FILE.match(block.text)
    return match.group(1) if match else None


def readme_blocks(path: Path) -> list[Block]:
    return read_blocks(path.read_text())
