"""``edgedistill split token`` and token files: 0600 from the first byte, never
overwritten without --force, and binary, empty or weak files refused clearly."""

from __future__ import annotations

import os
import stat

import pytest

from edgedistill.split.cli import main
from edgedistill.split.tokens import read_token


def run(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def test_token_command_writes_a_private_random_token(tmp_path, capsys):
    path = tmp_path / "token"
    old = os.umask(0)  # even with no umask the file is 0600
    try:
        code, out, _ = run(["token", str(path)], capsys)
    finally:
        os.umask(old)
    assert code == 0 and str(path) in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = read_token(path)
    assert len(token) >= 43 and token not in out
    code, _, err = run(["token", str(path)], capsys)
    assert code == 2 and "--force" in err and "Traceback" not in err
    assert read_token(path) == token
    code, _, _ = run(["token", str(path), "--force"], capsys)
    assert code == 0 and read_token(path) != token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["token"]


def test_token_command_refuses_a_missing_folder(tmp_path, capsys):
    code, _, err = run(["token", str(tmp_path / "no" / "token")], capsys)
    assert code == 2 and "does not exist" in err


@pytest.mark.parametrize("content,needle", [
    (b"", "is empty"),
    (b"  \n\n", "is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" * 4, "not text"),
    ("tökén-with-ümlauts-long-enough".encode(), "not text"),
    (b"short", "at least 16 characters"),
    (b"two words but long enough", "one word"),
    (b"tab\tinside-a-long-token", "one word"),
])
def test_bad_token_files_exit_2_with_one_line(tmp_path, content, needle, split_run, capsys):
    path = tmp_path / "token"
    path.write_bytes(content)
    path.chmod(0o600)
    code, _, err = run(["serve", str(split_run), "--token-file", str(path)], capsys)
    assert code == 2 and needle in err and "Traceback" not in err
    assert "edgedistill split token" in err and len(err.strip().splitlines()) == 1
