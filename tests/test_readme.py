"""README.md runs as written: every command and YAML block in it, so it cannot drift.

The blocks are read from README.md each run (``tests/readme_blocks.py``), so a new block
is picked up without touching this file. Fast tests: every command is parsed by the
real CLI and loads its config, in README order, and its paths exist or are made by a
command above it (``tests/readme_check.py``); every YAML block validates against its
schema (whole, or as sections of a base config) and builds its models. The slow test
runs every command in order in a temporary folder, with small data injected
(``injected``). A command that cannot run here is in ``NOT_RUN`` with its reason; the
tests fail when a command is neither runnable nor listed, or when a listed one is gone.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from edgedistill import api
from edgedistill.config import DistillExperiment, load_config
from edgedistill.config.split import SplitExperiment
from tests.readme_blocks import Block, python_file, read_blocks, read_commands, readme_blocks
from tests.readme_check import ROOT, Walk, as_config, dry_parse

README = ROOT / "README.md"
BIN = Path(sys.executable).parent
PATH = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
KINDS = {"bash", "indented", "yaml", "python", "text"}  # text blocks are shown, not run
RUNS = {"edgedistill", "python", "chmod"}  # programs the slow test runs
MADE_FROM_YAML = "my_experiment.yaml"  # the README's name for "the YAML block above"
CLUSTER = "needs a multi-machine Ray cluster (tests/elastic test a real local one)"
SERVICE = ("needs a Ray cluster; tests/elastic/test_service.py runs serve, distill attached "
           "to a service, status and stop against a real local one")
NOT_RUN = {
    "make demo": "the demo on 20,000 images (3 min of both cores); tests/test_demo.py runs "
                 "the same `edgedistill demo` on 512",
    "make test": "the test suite itself, which this test is part of",
    "python benchmarks/split_upscaled.py --teacher-epochs 3":
        "a benchmark (the split measured over a shaped link, long); the slow test trains "
        "the teacher it makes with its own train_teacher on small data instead",
    "ray start --head --port 6379 --num-cpus 4": CLUSTER,
    "ray start --address HEAD_IP:6379 --num-cpus 16": CLUSTER,
    "RAY_AUTH_MODE=token edgedistill distill my_experiment.yaml "
    "--set teacher.pool.address=HEAD_IP:6379 --out runs/kd_resnet8_cluster": CLUSTER,
    "ray stop": CLUSTER,
    "torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint "
    "HEAD_IP:29400 --rdzv-id kd1 -m edgedistill distill my_experiment.yaml --out "
    "runs/kd_resnet8_ddp": "needs two machines with 8 GPUs each; tests/train/test_ddp.py "
                           "runs the same ranks through torchrun on one machine",
    "edgedistill teachers serve configs/fashion_mnist/kd_resnet8.yaml --name fm56 "
    "--address HEAD_IP:6379": SERVICE,
    "edgedistill distill configs/fashion_mnist/kd_resnet8.yaml --set teacher.mode=pool "
    "--set teacher.pool.service=fm56 --set teacher.pool.address=HEAD_IP:6379 "
    "--out runs/kd_resnet8_service": SERVICE,
    "edgedistill teachers status fm56 --address HEAD_IP:6379": SERVICE,
    "edgedistill teachers stop fm56 --address HEAD_IP:6379": SERVICE,
}
SMALL_DATA = ["data.limit_train=256", "data.limit_test=256"]
SMALL = [a for s in [*SMALL_DATA, "train.epochs=1"] for a in ("--set", s)]


def injected(names: tuple[str, ...], params: dict) -> list[str]:
    """Arguments appended to a command in the slow run (a later --set wins): small data,
    one epoch, fewer measurements."""
    if names in (("train",), ("distill",), ("split", "train")):
        return SMALL
    if names == ("study",):  # one hint epoch, then one of the rest
        return [*SMALL, "--set", "train.epochs=2", "--set", "hint.stage_epochs=1",
                "--set", "seeds=[0]"]
    if names == ("design",):
        return [*(SMALL if params["train"] else []), "--measure", "1"]
    if names == ("profile-device",):
        return ["--quick"]
    if names in (("eval",), ("export",)):
        return ["--limit-test", "256"]
    return []

def commands():
    return [c for b in readme_blocks(README) if b.kind in ("bash", "indented")
            for c in read_commands(b)]


def yaml_blocks() -> list[Block]:
    return [b for b in readme_blocks(README) if b.kind == "yaml"]


def workdir(path: Path) -> Path:
    """A reader's checkout: the repository's configs and benchmarks, nothing else."""
    for name in ("configs", "benchmarks"):
        (path / name).symlink_to(ROOT / name)
    return path


def write_made_from_yaml(cmd, cwd: Path) -> None:
    """``my_experiment.yaml``: the YAML block above the command, as a whole config."""
    if MADE_FROM_YAML in cmd.argv:
        above = [b for b in yaml_blocks() if b.line < cmd.line]
        assert above, f"README line {cmd.line}: no YAML block above for {MADE_FROM_YAML}"
        (cwd / MADE_FROM_YAML).write_text(yaml.safe_dump(as_config(above[-1])[1]))


def test_blocks_are_read_from_markdown():
    text = ("# A\n\n```bash\nedgedistill zoo   # the zoo\nedgedistill train c.yaml \\\n"
            "    --resume\n```\n\npara\n\n    edgedistill serve x &\n\n## B\n\n"
            "```yaml\na: 1\n```\n```\nunlabelled\n```\n")
    blocks = read_blocks(text)
    assert [(b.kind, b.line, b.heading) for b in blocks] == [
        ("bash", 4, "A"), ("indented", 11, "A"), ("yaml", 16, "B"), ("", 19, "B")]
    cmds = [c for b in blocks[:2] for c in read_commands(b)]
    assert [c.key for c in cmds] == ["edgedistill zoo", "edgedistill train c.yaml --resume",
                                     "edgedistill serve x &"]
    assert [c.line for c in cmds] == [4, 5, 11]
    assert cmds[2].background and cmds[2].argv == ["edgedistill", "serve", "x"]
    with pytest.raises(ValueError, match="never closed"):
        read_blocks("```bash\nls\n")


def test_every_block_is_run_or_listed_with_a_reason():
    blocks = readme_blocks(README)
    odd = [(b.line, b.kind) for b in blocks if b.kind not in KINDS]
    assert not odd, f"label these README blocks bash, yaml or text: {odd}"
    keys = [c.key for c in commands()]
    assert len(keys) > 20 and len(yaml_blocks()) >= 2, "the README lost its examples?"
    gone = sorted(set(NOT_RUN) - set(keys))
    assert not gone, f"NOT_RUN lists commands the README no longer has: {gone}"
    unlisted = [c.key for c in commands() if c.argv[0] not in RUNS and c.key not in NOT_RUN]
    assert not unlisted, f"run these in test_readme.py or list them in NOT_RUN: {unlisted}"


def test_commands_parse_and_load_their_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(workdir(tmp_path))
    walk = Walk(tmp_path, PATH)
    for cmd in commands():
        write_made_from_yaml(cmd, tmp_path)
        if cmd.argv[0] == "edgedistill":
            walk.check(cmd)
        elif cmd.argv[0] == "make":
            done = subprocess.run(["make", "-n", *cmd.argv[1:]], cwd=ROOT, text=True,
                                  capture_output=True, timeout=60)
            assert done.returncode == 0, f"README line {cmd.line}: {done.stderr}"
        else:
            walk.check_other(cmd)


class FakeBatch:
    def __init__(self, n=4, shape=(1, 28, 28)):
        self.images = torch.randn(n, *shape)
        self.labels = torch.arange(n) % 10
        self.indices = torch.arange(n)
        self.epoch, self.step, self.draw = 0, 0, 0


@pytest.mark.parametrize("block", yaml_blocks(), ids=lambda b: f"line{b.line}")
def test_yaml_block_validates_and_builds(block):
    from edgedistill.distill.distiller import Distiller
    from edgedistill.distill.run import build_student
    from edgedistill.distill.sources import OnlineSource
    from edgedistill.elastic.spec import parse_autoscale, parse_replicas

    schema, raw, _ = as_config(block)
    if schema is not DistillExperiment or uses_readme_files(block):
        return  # a block on the README's own .py files is built in test_python_blocks_run
    cfg = DistillExperiment.model_validate(raw)
    if cfg.teacher.mode == "pool":
        parse_replicas(cfg.teacher.pool.replicas)
        parse_autoscale(cfg.teacher.pool.autoscale)
    teacher = api.load_model(cfg.teacher.source)
    student = build_student(cfg.student, teacher, 10, 1)
    distiller = Distiller(student, teacher, OnlineSource(teacher, torch.device("cpu")),
                          cfg.losses)
    distiller.setup(None, FakeBatch())
    logits, losses = distiller(FakeBatch())
    assert logits.shape == (4, 10) and all(torch.isfinite(v) for v in losses.values())


def python_blocks() -> list[Block]:
    return [b for b in readme_blocks(README) if b.kind == "python"]


def uses_readme_files(block: Block) -> bool:
    return any(f"{python_file(b)}:" in block.text for b in python_blocks() if python_file(b))


def test_python_blocks_run(tmp_path, monkeypatch):
    """The Python blocks run in README order in a fresh folder (``# NAME.py`` blocks are
    saved as that file first), as one script in a new interpreter; then the YAML blocks
    that name those files validate there and build their teacher (with the weights the
    script saved) and student."""
    from edgedistill.distill.run import build_student

    blocks = python_blocks()
    assert blocks, "the README lost its Python example?"
    script = []
    for block in blocks:
        name = python_file(block)
        if name:
            (tmp_path / name).write_text(block.text)
        else:
            script.append(block.text)
    (tmp_path / "readme_example.py").write_text("\n".join(script))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "readme_example.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    yamls = [b for b in yaml_blocks() if uses_readme_files(b)]
    assert yamls, "the README lost its YAML factory example?"
    monkeypatch.chdir(tmp_path)
    for block in yamls:
        cfg = DistillExperiment.model_validate(as_config(block)[1])
        teacher = api.load_model(cfg.teacher.source, 10, 1)
        assert teacher.weights_info["loaded_keys"] > 0
        student = build_student(cfg.student, teacher, 10, 1)
        assert student(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_pool_examples_fit_the_two_core_machine_they_are_shown_on():
    """Embedded Ray gets the cores the student leaves (at least one; elastic/cluster.py
    ``connect``): on 2 cores, 1. Every replica the README starts must fit in that."""
    from edgedistill.elastic.spec import parse_replicas

    configs = [as_config(b) for b in yaml_blocks()]
    pools = [cfg for cfg in (DistillExperiment.model_validate(raw) for schema, raw, _ in configs
                             if schema is DistillExperiment) if cfg.teacher.mode == "pool"]
    assert pools, "the README has no pool example"
    for cfg in pools:
        ray_cpus = max(1, 2 - (cfg.train.threads or 2))
        specs = parse_replicas(cfg.teacher.pool.replicas)
        assert sum(s.num_cpus for s in specs) <= ray_cpus, [s.describe() for s in specs]
        assert not any(s.num_gpus or s.resources for s in specs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert process.poll() is None, f"the server exited with {process.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


def with_port(argv: list[str], readme_port: int | None, port: int) -> list[str]:
    """The README's server port replaced by a free one, so parallel runs do not collide."""
    if readme_port is None:
        return argv
    return [str(port) if a == str(readme_port) and argv[i - 1] == "--port"
            else a.replace(f":{readme_port}", f":{port}") for i, a in enumerate(argv)]


def upscaled_teacher(cwd: Path) -> None:
    """What ``benchmarks/split_upscaled.py`` makes before it benchmarks: its teacher."""
    from benchmarks.split_upscaled import train_teacher

    cfg = load_config(ROOT / "configs/split/fashion_mnist96_resnet18.yaml", SplitExperiment,
                      SMALL_DATA)
    train_teacher(cfg, cwd / cfg.teacher.source, epochs=1, model="resnet18")


def check_pool_run(run_dir: Path, cmd) -> None:
    """A run with ``teacher.mode: pool`` really read its teacher from live replicas."""
    config = run_dir / "config.yaml"
    if not config.is_file() or yaml.safe_load(config.read_text()).get(
            "teacher", {}).get("mode") != "pool":
        return
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["replicas"] >= 1, f"README line {cmd.line}: no replica was alive: {last}"


STAND_INS = {"python benchmarks/split_upscaled.py --teacher-epochs 3": upscaled_teacher}


@pytest.mark.slow
def test_readme_runs_in_order(tmp_path, monkeypatch):
    cwd = workdir(tmp_path)
    monkeypatch.chdir(cwd)
    env = {**os.environ, "PATH": PATH, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    walk, port, servers, took = Walk(cwd, PATH), free_port(), [], []
    serve_ports = [dry_parse(c.argv[1:])[1]["port"] for c in commands()
                   if c.argv[:3] == ["edgedistill", "split", "serve"]]
    readme_port = serve_ports[0] if serve_ports else None
    try:
        for cmd in commands():
            start = time.monotonic()
            if cmd.key in NOT_RUN:
                if cmd.key in STAND_INS:
                    STAND_INS[cmd.key](cwd)
                    took.append((round(time.monotonic() - start, 1), cmd.line, "stand-in"))
                continue
            write_made_from_yaml(cmd, cwd)
            argv, outputs = cmd.argv, []
            if argv[0] == "edgedistill":
                names, params, outputs = walk.check(cmd)
                argv = with_port([*argv, *injected(names, params)], readme_port, port)
            else:
                walk.check_other(cmd)
            run_env = {**env, **cmd.env}
            if cmd.background:
                with (cwd / f"background-{cmd.line}.log").open("w") as log:
                    servers.append(subprocess.Popen(argv, cwd=cwd, env=run_env, stdout=log,
                                                    stderr=subprocess.STDOUT))
                wait_for_port(port, servers[-1])
                took.append((round(time.monotonic() - start, 1), cmd.line, cmd.key[:60]))
                continue
            shell = ["bash", "-c", cmd.text] if cmd.needs_shell else argv
            done = subprocess.run(shell, cwd=cwd, env=run_env, text=True, capture_output=True,
                                  timeout=1200)
            assert done.returncode == 0, (f"README line {cmd.line}: {cmd.text}\n"
                                          f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            for out in outputs:
                assert (cwd / out).exists(), f"README line {cmd.line} did not make {out}"
                check_pool_run(cwd / out, cmd)
            took.append((round(time.monotonic() - start, 1), cmd.line, cmd.key[:60]))
    finally:
        for server in servers:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        print("\n".join(f"{s:7.1f} s  line {line}: {key}" for s, line, key in took))
