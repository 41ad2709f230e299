"""Data-parallel training on CPU with gloo and 2 real ranks started by torchrun.

* Without BatchNorm a 2-rank step is the 1-rank step's math: the per-step losses agree
  within 1e-5 (measured 4.8e-7 over 16 steps: float summation order only).
* With BatchNorm each rank normalizes its own 32-image slice of the 64-image batch (a
  "ghost batch" of B/N), so the losses differ by a bounded amount (measured at most 0.7%
  over 16 steps of resnet8); ``train.sync_bn`` removes that on CUDA (torch's SyncBatchNorm
  has no CPU kernel), see benchmarks/gpu_check.sh.
* ``--nproc 2`` records the world in summary.json and writes each file once; a rank
  killed with SIGKILL stops the job within 30 s naming the rank, and ``--resume``
  continues to the very weights of a run never interrupted; so for rank 0 (the one
  writer) of a distill with a cache teacher.
* With ``teacher.pool.service`` each rank is a student of the user's running service
  (a real Ray, the fixture of tests/elastic/test_service.py), which outlives the job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from edgedistill.data import BatchPipeline, load_dataset
from edgedistill.errors import UsageError
from tests.conftest import CLI, run_cli, set_dotted, tiny_train_config
from tests.elastic.test_service import cluster  # noqa: F401 (a private Ray, a fixture)

HERE = Path(__file__).parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
# the worker's BatchNorm-free convnet, as a factory model
NOBN = {"factory": f"{HERE / 'ddp_worker.py'}:nobn"}
TIMING = {"epoch_seconds", "images_per_s", "wall_seconds", "teacher_wait_s", "cache_build_s"}


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_the_ranks_slices_make_the_one_process_batch():
    train, _ = load_dataset("synthetic", seed=0, num_train=200, num_test=10, image_size=8)
    one = BatchPipeline(train, 64, train=True, seed=3, augment=train.augment, shard=(0, 1))
    ranks = [BatchPipeline(train, 64, train=True, seed=3, augment=train.augment, shard=(r, 2))
             for r in range(2)]
    for epoch, step in [(0, 0), (1, 2), (5, 1)]:
        whole = one.batch(epoch, step)
        parts = [p.batch(epoch, step) for p in ranks]
        assert [len(p) for p in parts] == [32, 32]
        for field in ("images", "raw", "labels", "indices"):
            assert torch.equal(torch.cat([getattr(p, field) for p in parts]),
                               getattr(whole, field))
    assert len(ranks[0]) == len(one) == 3


def test_an_eval_batch_that_does_not_split_evenly_still_covers_every_image():
    _, test = load_dataset("synthetic", seed=0, num_train=10, num_test=101, image_size=8)
    parts = [BatchPipeline(test, 50, train=False, shard=(r, 2)) for r in range(2)]
    seen = torch.cat([b.indices for p in parts for b in p.epoch(0)])
    assert sorted(seen.tolist()) == list(range(101))


def test_a_training_batch_must_split_into_equal_slices():
    train, _ = load_dataset("synthetic", seed=0, num_train=200, num_test=10, image_size=8)
    with pytest.raises(UsageError, match="data.batch_size 64 does not split into 3 equal"):
        BatchPipeline(train, 64, train=True, shard=(0, 3))


def step_losses(folder: Path) -> list[float]:
    """The global batch's loss per step: the mean of the ranks' slice losses (equal
    slices, so the mean of means is the mean)."""
    ranks = sorted(folder.glob("steps-rank*.json"))
    losses = [json.loads(p.read_text())["losses"] for p in ranks]
    return [sum(x) / len(x) for x in zip(*losses, strict=True)]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """Per-step losses of the same two configs (BN-free and resnet8) on 1 and on 2 ranks."""
    tmp = tmp_path_factory.mktemp("steps")
    args = {1: [], 2: []}
    for model in ("nobn", "resnet8"):
        cfg = tiny_train_config(**{"model.name": model, "train.deterministic": True,
                                   "data.eval_batch_size": 100})
        if model == "nobn":
            cfg["model"] = NOBN
        path = tmp / f"{model}.json"
        path.write_text(json.dumps(cfg))
        for n in (1, 2):
            args[n] += [str(path), str(tmp / f"{model}-{n}")]
    worker = str(HERE / "ddp_worker.py")
    one = subprocess.run([sys.executable, worker, *args[1]], env=env(), capture_output=True,
                         text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([*TORCHRUN, "--nproc-per-node=2", worker, *args[2]], env=env(),
                         capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    return {m: (step_losses(tmp / f"{m}-1"), step_losses(tmp / f"{m}-2"), tmp)
            for m in ("nobn", "resnet8")}


def test_two_ranks_follow_one_rank_step_by_step(compared):
    one, two, tmp = compared["nobn"]
    assert len(one) == len(two) == 16
    assert max(abs(a - b) for a, b in zip(one, two, strict=True)) < 1e-5
    a = load_file(str(tmp / "nobn-1" / "model.safetensors"))
    b = load_file(str(tmp / "nobn-2" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    ranks = [json.loads((tmp / "nobn-2" / f"steps-rank{r}.json").read_text()) for r in (0, 1)]
    whole = json.loads((tmp / "nobn-1" / "steps-rank0.json").read_text())["first_indices"]
    assert ranks[0]["first_indices"] + ranks[1]["first_indices"] == whole


def test_batchnorm_per_slice_keeps_the_difference_bounded(compared):
    """Each rank's BatchNorm sees 32 of the 64 images: an honest, small difference that
    starts at step 0 (statistics of half the batch) and stays bounded."""
    one, two, _ = compared["resnet8"]
    rel = [abs(a - b) / a for a, b in zip(one, two, strict=True)]
    assert 0 < rel[0] < 0.005
    assert max(rel) < 0.02


def test_evaluation_is_sharded_and_reduced(compared):
    _, _, tmp = compared["nobn"]
    one = [json.loads(x) for x in (tmp / "nobn-1" / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (tmp / "nobn-2" / "metrics.jsonl").read_text().splitlines()]
    assert len(one) == len(two) == 2  # written once, by rank 0
    for a, b in zip(one, two, strict=True):
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=1 / 256)
        assert a["test_loss"] == pytest.approx(b["test_loss"], abs=1e-5)
        assert a["images_seen"] == b["images_seen"]


# ---- the CLI: --nproc, run directory, kill and resume ----

def cli_config(**over) -> dict:
    return tiny_train_config(**{"train.deterministic": True, "train.checkpoint_every_steps": 3,
                                **over})


def records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING} for x in lines]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """An uninterrupted 2-rank ``edgedistill train --nproc 2``."""
    tmp = tmp_path_factory.mktemp("full")
    path = tmp / "cfg.yaml"
    import yaml

    path.write_text(yaml.safe_dump(cli_config()))
    res = run_cli("train", str(path), "--nproc", "2", "--out", str(tmp / "run"))
    assert res.returncode == 0, res.stderr[-3000:]
    return path, tmp / "run", res


def test_nproc_records_the_world_and_writes_each_file_once(full_run):
    _, run, res = full_run
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["world_size"], summary["backend"], summary["devices"]) == \
        (2, "gloo", ["cpu", "cpu"])
    assert [r["epoch"] for r in records(run)] == [0, 1]
    assert summary["images_seen"] == 2 * 512
    assert res.stdout.count("final test accuracy") == 1  # rank 1's stdout is quiet
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["world_size"] == 2


def test_nproc_refuses_bad_input_before_starting_ranks(tmp_path, write_yaml):
    path = write_yaml(cli_config(**{"data.batch_size": 63}))
    res = run_cli("train", str(path), "--nproc", "2", "--out", str(tmp_path / "run"))
    assert res.returncode == 2
    assert "data.batch_size 63 does not split into 2 equal slices" in res.stderr
    assert "Traceback" not in res.stderr


def children_with_rank(pid: int, rank: int) -> int | None:
    """The pid of the child of ``pid`` that torchrun started as rank ``rank``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def kill_at_first_checkpoint(command: list[str], run: Path, rank: int) -> tuple[int, str]:
    """Start ``edgedistill COMMAND --nproc 2 --out RUN``, SIGKILL rank ``rank`` once the
    first checkpoint is written, and check that the job then stopped, failed, within 30 s;
    the killed pid and the job's stderr."""
    proc = subprocess.Popen([*CLI, *command, "--nproc", "2", "--out", str(run)], env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ckpt = run / "checkpoints" / "last.pt"
    deadline = time.time() + 400
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    victim = children_with_rank(proc.pid, rank)
    assert ckpt.exists() and victim is not None, "no checkpoint before the job ended"
    os.kill(victim, signal.SIGKILL)
    killed_at = time.time()
    _, stderr = proc.communicate(timeout=60)
    assert time.time() - killed_at < 30
    assert proc.returncode != 0
    return victim, stderr


def assert_resumes_to(full: Path, command: str, path: Path, run: Path) -> None:
    """``edgedistill COMMAND PATH --nproc 2 --resume`` of the killed ``run`` ends with the
    records and the very weights of the uninterrupted run ``full``."""
    resumed = run_cli(command, str(path), "--nproc", "2", "--out", str(run), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert records(run) == records(full)
    a = load_file(str(full / "model.safetensors"))
    b = load_file(str(run / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_killed_rank_stops_the_job_and_resume_continues_exactly(full_run, tmp_path):
    path, full, _ = full_run
    run = tmp_path / "killed"
    ckpt = run / "checkpoints" / "last.pt"
    _, stderr = kill_at_first_checkpoint(["train", str(path)], run, rank=1)
    assert "rank 1 of 2" in stderr and "SIGKILL" in stderr and "--resume" in stderr, stderr
    assert "Traceback" not in stderr, stderr  # rank 0 says in one line that a peer is gone
    state = torch.load(ckpt, weights_only=True)
    assert not (run / "summary.json").exists(), "the job finished before the kill"

    if state["step"] > 0:  # mid-epoch: another number of ranks is refused, naming both
        other = run_cli("train", str(path), "--out", str(run), "--resume")
        assert other.returncode == 2
        assert "written by 2 rank(s) mid-epoch" in other.stderr and "--nproc 2" in other.stderr

    assert_resumes_to(full, "train", path, run)


@pytest.mark.slow
def test_resume_at_an_epoch_boundary_with_another_number_of_ranks(tmp_path, write_yaml):
    cfg = cli_config(**{"train.epochs": 1})
    path = write_yaml(cfg)
    run = tmp_path / "run"
    first = run_cli("train", str(path), "--nproc", "2", "--out", str(run))
    assert first.returncode == 0, first.stderr[-3000:]
    more = write_yaml(set_dotted(cfg, {"train.epochs": 2}), "more.yaml")
    second = run_cli("train", str(more), "--out", str(run), "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert [r["epoch"] for r in records(run)] == [0, 1]
    assert json.loads((run / "summary.json").read_text())["world_size"] == 1


# ---- teacher sources under 2 ranks ----

SYNTHETIC = {"num_train": 512, "num_test": 128, "image_size": 16, "channels": 3}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from edgedistill.models import create_model
    from edgedistill.train.checkpoint import save_weights

    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, in_channels=3)
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_weights(path, model.state_dict(), model.spec)
    return path


def kd_config(teacher, mode: str, tmp: Path) -> dict:
    return {
        "name": f"kd-{mode}", "seed": 0,
        "data": {"dataset": "synthetic", "options": SYNTHETIC, "batch_size": 32},
        "teacher": {"source": str(teacher), "mode": mode,
                    "cache": {"dir": str(tmp / "teacher-cache"), "precision": "fp32"},
                    "pool": {"replicas": [{"backend": "torch", "num_cpus": 0.5}],
                             "max_in_flight": 3, "wire_precision": "fp32"}},
        "student": {"name": "resnet8", "kwargs": {"width": 0.5}},
        "train": {"epochs": 1, "threads": 1, "progress": False, "deterministic": True,
                  "optimizer": {"name": "sgd", "lr": 0.05}},
    }


def distill_two_ranks(teacher, mode: str, tmp: Path):
    import yaml

    path = tmp / f"{mode}.yaml"
    path.write_text(yaml.safe_dump(kd_config(teacher, mode, tmp)))
    res = run_cli("distill", str(path), "--nproc", "2", "--out", str(tmp / mode))
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp / mode / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["teacher_mode"] == mode
    return records(tmp / mode)[0], res


@pytest.fixture(scope="module")
def online_two_ranks(teacher, tmp_path_factory):
    return distill_two_ranks(teacher, "online", tmp_path_factory.mktemp("online"))[0]


def test_online_teacher_per_rank(online_two_ranks):
    assert online_two_ranks["loss/kd"] > 0 and online_two_ranks["images_seen"] == 512


def test_cache_under_two_ranks_equals_online(online_two_ranks, teacher, tmp_path):
    record, res = distill_two_ranks(teacher, "cache", tmp_path)
    assert res.stdout.count("teacher cache: built") == 1
    assert len(list((tmp_path / "teacher-cache").iterdir())) == 1  # one cache, no half-built copy
    for key in ("train_loss", "loss/kd", "test_loss"):
        assert record[key] == pytest.approx(online_two_ranks[key], abs=1e-5)


def _attach_cache(rank: int, teacher: str, root: str, init: str) -> None:
    """Rank ``rank`` of 2 (gloo): attach a CacheSource and write what it logged."""
    import torch.distributed as dist

    from edgedistill import api
    from edgedistill.distill.cache import CacheSource

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    torch.set_num_threads(1)
    train, _ = load_dataset("synthetic", seed=0, **SYNTHETIC)
    pipe = BatchPipeline(train, 32, train=True, seed=0, augment=train.augment, num_draws=2)
    lines: list[str] = []
    src = CacheSource(api.load_model(teacher), root, torch.device("cpu"), num_draws=2,
                      batch_size=128, log=lines.append)
    src.attach([], pipe)
    assert src.outputs(pipe.batch(0, 0)).logits.shape == (16, 10)
    Path(root, f"log-rank{rank}.txt").write_text("\n".join(lines))
    dist.destroy_process_group()


def test_the_cache_is_built_once_by_rank_0_and_read_by_both(teacher, tmp_path):
    import torch.multiprocessing as mp

    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_attach_cache, args=(str(teacher), str(tmp_path), init), nprocs=2, join=True)
    logs = [(tmp_path / f"log-rank{r}.txt").read_text() for r in (0, 1)]
    assert "teacher cache: built" in logs[0]
    assert logs[1] == ""  # rank 1 neither built nor checked: it waited for rank 0
    assert len(list(tmp_path.glob("*.building-*"))) == 0


@pytest.mark.slow
def test_one_shared_pool_serves_both_ranks_like_the_online_teacher(online_two_ranks, teacher,
                                                                    tmp_path):
    record, _ = distill_two_ranks(teacher, "pool", tmp_path)
    for key in ("train_loss", "loss/kd", "test_loss"):
        assert record[key] == pytest.approx(online_two_ranks[key], abs=1e-5)
    assert record["replicas"] == 1  # one pool for the two ranks, not one each


def test_sync_batchnorm_swap_keeps_the_modules_their_hooks_and_numbers():
    """``train.sync_bn`` turns BatchNorm into SyncBatchNorm in place (hooks by module path
    stay on the same objects); outside a process group it computes what BatchNorm does.
    The synced statistics themselves need CUDA: benchmarks/gpu_check.sh measures them."""
    from edgedistill.models import FeatureExtractor, create_model
    from edgedistill.train.distributed import use_sync_batchnorm

    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, in_channels=1)
    x = torch.randn(8, 1, 28, 28)
    before = model(x)
    hooks = FeatureExtractor(model, ["layer1.0.bn1"])
    assert use_sync_batchnorm(model) == sum(1 for m in model.modules()
                                            if isinstance(m, torch.nn.SyncBatchNorm))
    assert isinstance(model.layer1[0].bn1, torch.nn.SyncBatchNorm)
    after = model(x)
    assert "layer1.0.bn1" in hooks.features
    assert torch.allclose(before, after, atol=1e-6)


def test_sync_bn_on_cpu_ranks_is_refused_in_one_line(tmp_path, write_yaml):
    path = write_yaml(cli_config(**{"train.sync_bn": True, "train.epochs": 1}))
    res = run_cli("train", str(path), "--nproc", "2", "--out", str(tmp_path / "run"))
    assert res.returncode == 2
    assert "train.sync_bn: torch's SyncBatchNorm runs on CUDA only" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_the_same_command_under_a_users_own_torchrun(tmp_path, write_yaml):
    path = write_yaml(cli_config(**{"train.epochs": 1}))
    res = subprocess.run([*TORCHRUN, "--nproc-per-node=2", "-m", "edgedistill", "train",
                          str(path), "--out", str(tmp_path / "run")], env=env(),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and len(records(tmp_path / "run")) == 1


@pytest.mark.slow
def test_a_halt_is_rank_0s_decision_and_both_ranks_stop_together(tmp_path, write_yaml):
    cfg = cli_config(**{"train.epochs": 3, "train.checkpoint_every_steps": None})
    cfg["halting"] = [{"kind": "plateau", "patience": 1, "min_delta": 1.0}]
    res = run_cli("train", str(write_yaml(cfg)), "--nproc", "2", "--out", str(tmp_path / "r"),
                  timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["halted"]["reason"].startswith("plateau")
    assert (tmp_path / "r" / "checkpoints" / "halt.pt").exists()


def test_gloo_holds_no_tensor_of_a_collective_that_returned(tmp_path):
    """Each helper's collective runs on tensors it owns and returns only once gloo's
    worker thread let go of them: a tensor that thread frees itself takes the GIL, and at
    interpreter teardown that killed ranks with SIGABRT after their work was done (4 of
    20 and 1 of 20 two-rank runs before; 0 of 70 after)."""
    worker = str(HERE / "collectives_worker.py")
    res = subprocess.run([*TORCHRUN, "--nproc-per-node=2", worker, str(tmp_path)], env=env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for got in ranks:
        assert (got["still_held"], got["kept"]) == (0, 0)
        assert got["broadcast"] == ["from", 0, 49]
        assert got["sums"] == [3.0, 98.0]
        assert got["gather"] == [[0, 49, list(range(49))], [1, 49, list(range(50))]]


def test_more_ranks_than_cuda_devices_is_refused_before_any_rank_starts(monkeypatch):
    """The refusal on a CUDA machine with one GPU (faked: this machine has none; the
    same config on CPU is accepted, so the refusal is the device count's)."""
    from edgedistill.config import TrainExperiment
    from edgedistill.train.launch import check_before_start

    cfg = TrainExperiment.model_validate(tiny_train_config(**{"train.device": "cuda"}))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UsageError, match=r"--nproc 2 on 1 CUDA device\(s\).*--nproc 1 or fewer"):
        check_before_start(cfg, 2)
    check_before_start(cfg, 1)
    monkeypatch.undo()
    check_before_start(TrainExperiment.model_validate(
        tiny_train_config(**{"train.device": "cpu"})), 2)


@pytest.mark.slow
def test_a_resume_with_another_number_of_ranks_at_an_epoch_boundary_is_exact(tmp_path,
                                                                           write_yaml):
    """Epoch 0 on 2 ranks, epoch 1 resumed on 1: without BatchNorm (whose statistics are
    per slice) the weights and records are those of 2 epochs on 1 rank, uninterrupted."""
    cfg = cli_config(**{"train.schedule.name": "constant", "data.eval_batch_size": 100})
    cfg["model"] = NOBN
    both = write_yaml(cfg)
    first = write_yaml(set_dotted(cfg, {"train.epochs": 1}), "first.yaml")
    ref, run = tmp_path / "ref", tmp_path / "run"
    res = run_cli("train", str(both), "--out", str(ref))
    assert res.returncode == 0, res.stderr[-3000:]
    res = run_cli("train", str(first), "--nproc", "2", "--out", str(run))
    assert res.returncode == 0, res.stderr[-3000:]
    res = run_cli("train", str(both), "--out", str(run), "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = (load_file(str(d / "model.safetensors")) for d in (ref, run))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    for x, y in zip(records(ref), records(run), strict=True):
        assert x["epoch"] == y["epoch"] and x["images_seen"] == y["images_seen"]
        assert x["test_loss"] == pytest.approx(y["test_loss"], abs=1e-5)
        assert x["test_acc"] == pytest.approx(y["test_acc"], abs=1 / 256)


# ---- a user's running teacher service, and rank 0 killed, under 2 ranks ----

@pytest.mark.slow
def test_every_rank_attaches_to_a_running_teacher_service(online_two_ranks, teacher, cluster,  # noqa: F811
                                                          tmp_path):
    """``teacher.pool.service: NAME`` under ``--nproc 2``: no pool of the job's own; each
    rank is a student of the user's service (seen in its status while the job runs),
    trains as with the online teacher, and the service outlives the job."""
    import yaml

    from edgedistill.elastic.service import running_services, stop_service
    from tests.elastic.test_service import status

    cfg = kd_config(teacher, "pool", tmp_path)
    served_cfg = tmp_path / "serve.yaml"
    served_cfg.write_text(yaml.safe_dump(cfg))
    served = run_cli("teachers", "serve", str(served_cfg), "--name", "users", "--address",
                     cluster, timeout=300)
    assert served.returncode == 0, served.stderr[-3000:]
    try:
        pool = cfg["teacher"]["pool"]
        pool.update({"service": "users", "address": cluster,
                     "replicas": [{"backend": "torch", "num_cpus": 0.5}] * 2})  # ignored
        path = tmp_path / "student.yaml"
        path.write_text(yaml.safe_dump(cfg))
        run = tmp_path / "run"
        proc = subprocess.Popen([*CLI, "distill", str(path), "--nproc", "2", "--out", str(run)],
                                env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        students: set[str] = set()
        services: set[str] = set()
        ranks: dict[int, int] = {}
        deadline = time.time() + 500
        while proc.poll() is None and time.time() < deadline:
            for r in (0, 1):
                pid = children_with_rank(proc.pid, r)
                if pid is not None:
                    ranks.setdefault(r, pid)
            students |= {s["id"] for s in status("users")["students"]}
            services |= set(running_services())
            time.sleep(0.3)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr[-3000:]
        # each rank attached as a student of its own (ids are host-pid-random)
        assert sorted(ranks) == [0, 1]
        assert {int(s.split("-")[-2]) for s in students} == set(ranks.values()), \
            (students, ranks)
        summary = json.loads((run / "summary.json").read_text())
        assert summary["world_size"] == 2 and summary["teacher_mode"] == "pool"
        record = records(run)[0]
        for key in ("train_loss", "loss/kd", "test_loss"):
            assert record[key] == pytest.approx(online_two_ranks[key], abs=1e-5)
        assert record["replicas"] == 1  # the service's one replica, not the job's two
        after = status("users")
        assert after["students"] == []  # both ranks detached when the job ended
        assert sum(r["served"] for r in after["replicas"]) >= 2 * 16  # 16 steps, 2 slices
        assert "users" in running_services()  # the job did not stop the user's service
        assert services == {"users"}  # nor started a pool of its own next to it
    finally:
        stop_service("users")


@pytest.mark.slow
def test_a_killed_rank_0_stops_a_cached_distill_and_resume_continues_exactly(teacher,
                                                                             tmp_path):
    """Rank 0 (the one writer, which built the teacher cache) is SIGKILLed mid-epoch: rank 1
    is stopped within seconds, the job says so in one line, and ``--resume`` reaches the
    weights of an uninterrupted run."""
    import yaml

    def config(name: str) -> Path:
        cfg = kd_config(teacher, "cache", tmp_path / name)
        cfg["train"].update({"epochs": 2, "checkpoint_every_steps": 3})
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    full = tmp_path / "full"
    res = run_cli("distill", str(config("full")), "--nproc", "2", "--out", str(full))
    assert res.returncode == 0, res.stderr[-3000:]

    path, run = config("killed"), tmp_path / "killed"
    victim, stderr = kill_at_first_checkpoint(["distill", str(path)], run, rank=0)
    lines = [x for x in stderr.splitlines() if x.strip()]
    named = [x for x in lines if "rank 0 of 2" in x]
    assert len(named) == 1, stderr
    assert f"pid {victim}" in named[0] and "SIGKILL" in named[0] and "--resume" in named[0], \
        stderr
    assert "Traceback" not in stderr and "rank 1 of 2" not in stderr, stderr
    assert not (run / "summary.json").exists(), "the job finished before the kill"

    assert_resumes_to(full, "distill", path, run)
