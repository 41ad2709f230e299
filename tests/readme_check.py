"""What each README command and YAML block means, checked without running them.

``Walk`` goes through the commands in README order the way a reader's shell would: each
``edgedistill`` command is parsed by the real CLI (typer/click, no ``--help``), its
config or profile is loaded by the loader the CLI itself calls, and the paths it reads
must exist or have been made by an earlier command (a run directory, a token file, a
profile). ``as_config`` finds the schema a YAML block belongs to. ``tests/test_readme.py``
uses both, in its fast tests and before each command of its slow run.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import typer
import yaml

from edgedistill.config import (
    DistillExperiment,
    TrainExperiment,
    apply_overrides,
    load_config,
    read_yaml_mapping,
    validate,
)
from edgedistill.config.split import SplitExperiment
from edgedistill.config.study import StudyConfig, load_study
from edgedistill.design.profiles import DeviceProfile
from edgedistill.errors import UsageError
from tests.readme_blocks import Block, Command

ROOT = Path(__file__).resolve().parents[1]

# A fragment's top-level sections replace those of its schema's base config.
BASES = {
    DistillExperiment: "configs/fashion_mnist/kd_resnet8.yaml",
    TrainExperiment: "configs/fashion_mnist/teacher_resnet20.yaml",
    SplitExperiment: "configs/split/fashion_mnist_resnet20.yaml",
    StudyConfig: "configs/studies/fashion_mnist_cpu.yaml",
    DeviceProfile: "configs/devices/example_board.yaml",
}
CHECKED_PREFIXES = ("runs/", "configs/", "benchmarks/")
CHECKED_SUFFIXES = (".yaml", ".yml", ".txt")


def as_config(block: Block) -> tuple[type, dict, str]:
    """(schema, full config, how): the block alone if it is a whole config of a schema
    whose keys it uses, else the block's sections put into that schema's base."""
    raw = yaml.safe_load(block.text)
    assert isinstance(raw, dict), f"README line {block.line}: a YAML block is a mapping"
    candidates = [s for s in BASES if set(raw) <= set(s.model_fields)]
    assert candidates, (f"README line {block.line}: keys {sorted(raw)} fit no schema "
                        f"({', '.join(s.__name__ for s in BASES)})")
    errors = []
    for schema in candidates:
        try:
            validate(raw, schema, f"README line {block.line}")
            return schema, raw, "whole config"
        except UsageError as err:
            errors.append(str(err))
    for schema in candidates:
        merged = {**read_yaml_mapping(ROOT / BASES[schema]), **raw}
        try:
            validate(merged, schema, f"README line {block.line} in {BASES[schema]}")
            return schema, merged, f"sections of {BASES[schema]}"
        except UsageError as err:
            errors.append(str(err))
    raise AssertionError("\n".join(errors))


def dry_parse(args: list[str]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """(command path, parameters) of ``edgedistill ARGS`` as the CLI parses them."""
    from edgedistill.cli import app

    command = typer.main.get_command(app)
    ctx = command.make_context("edgedistill", list(args))
    names: list[str] = []
    while hasattr(command, "resolve_command"):
        name, command, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        names.append(name)
        ctx = command.make_context(name, rest, parent=ctx)
    return tuple(names), ctx.params


def _overrides(p: dict) -> list[str]:
    """``--set`` plus the options the CLI turns into overrides."""
    return [*p.get("set_", []), *([f"train.device={p['device']}"] if p.get("device") else []),
            *([f"teacher.pool.address={p['address']}"] if p.get("address") else [])]


def _run_dir(p: dict, cfg) -> Path:
    return Path(p["out"]) if p.get("out") else Path("runs") / cfg.name


def _train(p):
    return [_run_dir(p, load_config(p["config"], TrainExperiment, _overrides(p)))]


def _distill(p):
    return [_run_dir(p, load_config(p["config"], DistillExperiment, _overrides(p)))]


def _teachers_serve(p):
    """A service reads a distill config and writes nothing."""
    load_config(p["config"], DistillExperiment, _overrides(p))
    return []


def _split_train(p):
    return [_run_dir(p, load_config(p["config"], SplitExperiment, _overrides(p)))]


def _study(p):
    return [_run_dir(p, load_study(p["config"], _overrides(p)))]


def _design(p):
    from edgedistill.design.cli import _budgets, _profile, _shape, _widths
    from edgedistill.design.profiles import BUILTIN

    budgets = _budgets(p["storage"], p["max_time"], p["speed"], p["activation_memory"])
    _widths(p["widths"])
    _shape(p["input_shape"])
    apply_overrides({}, p["set_"])
    if (p["config"] or p["set_"] or p["halting_report"] or p["resume"]) and not p["train"]:
        raise UsageError("--config, --set, --halting-report and --resume apply to --train")
    if p["config"] is not None:
        read_yaml_mapping(p["config"])
    profile = p["profile"]
    if profile is not None and profile not in BUILTIN and not Path(profile).is_file():
        return []  # written by an earlier command (Walk.check checks that); loaded once it is
    device = _profile(profile, budgets, precision=p["precision"], threads=p["threads"],
                      batch=p["batch"])
    return [Path(p["out"]) if p["out"] else Path("runs") / f"design-{device.name}"]


def _profile_device(p):
    from edgedistill.design.cli import _budgets

    _budgets(p["storage"], p["max_time"], None, p["activation_memory"])
    return [Path(p["out"])]


def _split_plan(p):
    from edgedistill.split.planner import BUILTIN, load_profile

    for name in (p["device_profile"], p["server_profile"]):
        if name in BUILTIN or Path(name).is_file():
            load_profile(name)
    assert [float(b) for b in p["bandwidth"].split(",")], "--bandwidth is empty"
    assert p["server_backend"] in ("torch", "onnx"), p["server_backend"]
    return [Path(p["out"]) if p["out"] else Path(p["run_dir"]) / "plan"]


def _check(p):
    """``check`` reads a config of any kind and writes nothing."""
    from edgedistill.check import CHECKS, detect_kind

    CHECKS.get(p["kind"] or detect_kind(read_yaml_mapping(p["config"]), Path(p["config"])))
    return []


LOADERS: dict[tuple[str, ...], Callable[[dict], list[Path]]] = {
    ("train",): _train, ("distill",): _distill, ("split", "train"): _split_train,
    ("study",): _study, ("design",): _design, ("profile-device",): _profile_device,
    ("split", "plan"): _split_plan, ("split", "token"): lambda p: [Path(p["path"])],
    ("teachers", "serve"): _teachers_serve, ("check",): _check,
}
# Commands that only read what earlier ones made: no config of their own.
READERS = {("models",), ("datasets",), ("losses",), ("zoo",), ("eval",), ("export",),
           ("demo",), ("split", "serve"), ("split", "infer"), ("teachers", "status"),
           ("teachers", "stop")}
TRAINS = {("train",), ("distill",), ("split", "train"), ("study",)}


@dataclass
class Walk:
    """The reader's shell: files that exist or that earlier commands made, servers started."""

    cwd: Path
    path: str | None = None  # PATH to find programs on
    made: set[Path] = field(default_factory=set)
    servers: set[int] = field(default_factory=set)

    def exists(self, path: str | Path) -> bool:
        path = Path(path)
        return (self.cwd / path).exists() or any(
            path == m or m in path.parents for m in self.made)

    def check(self, cmd: Command) -> tuple[tuple[str, ...], dict, list[Path]]:
        """(command path, parameters, outputs) of an ``edgedistill`` command; an
        ``AssertionError`` or ``UsageError`` names the README line on a problem."""
        where = f"README line {cmd.line} ({cmd.text!r})"
        try:
            names, params = dry_parse(cmd.argv[1:])
        except Exception as err:  # click's usage errors, typer's type errors
            raise AssertionError(f"{where}: the CLI refuses it: {err}") from None
        outputs_given = {str(params.get("out"))} if params.get("out") else set()
        if names == ("split", "token"):
            outputs_given.add(str(params["path"]))
        for token in cmd.argv[1:]:
            if token in outputs_given or "://" in token or "=" in token:
                continue
            if token.startswith(CHECKED_PREFIXES) or token.endswith(CHECKED_SUFFIXES):
                assert self.exists(token), f"{where}: {token} neither exists nor is made above"
            if token.startswith("zoo:"):
                from edgedistill import pretrained

                assert token[4:] in pretrained.manifest(), f"{where}: no shipped {token}"
        if params.get("server"):
            port = urlparse(params["server"]).port
            assert port in self.servers, f"{where}: nothing above serves port {port}"
        if names == ("split", "serve"):
            self.servers.add(params["port"])
        loader = LOADERS.get(names)
        assert loader or names in READERS, f"{where}: tests/readme_check.py has no loader " \
                                           f"for `edgedistill {' '.join(names)}`"
        try:
            outputs = loader(params) if loader else []
        except UsageError as err:
            raise AssertionError(f"{where}: {err}") from None
        if names in TRAINS and not params.get("resume"):
            clash = [o for o in outputs if o in self.made]
            assert not clash, f"{where}: {clash} was made above; add --out or --resume"
        self.made.update(outputs)
        return names, params, outputs

    def check_other(self, cmd: Command) -> None:
        """A command of another program: it exists; ``python -c`` code compiles."""
        where = f"README line {cmd.line} ({cmd.text!r})"
        program = cmd.argv[0]
        assert shutil.which(program, path=self.path), f"{where}: {program} is not installed"
        if program == "python" and cmd.argv[1] == "-c":
            compile(cmd.argv[2], where, "exec")
        elif program == "python":
            assert (ROOT / cmd.argv[1]).is_file(), f"{where}: no {cmd.argv[1]}"
        self.made.update(Path(t) for t in cmd.redirect_targets)
