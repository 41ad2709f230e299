"""A teacher cache damaged on disk (NaN written over logits, a truncated shard, a
``meta.json`` that is not JSON, a missing shard, a cache without checksums) is found when
opened, named, deleted and rebuilt to the values the teacher gives; a teacher whose
outputs are not finite (or overflow fp16) is refused while the cache is written."""

import json

import numpy as np
import pytest
import torch

from edgedistill import api
from edgedistill.distill.cache import CacheSource
from edgedistill.errors import UsageError
from tests.distill.test_sources import CPU, pipes


@pytest.fixture
def built(tiny_teacher, tmp_path):
    """A real cache of logits and one feature layer, and the values it holds."""
    teacher = api.load_model(tiny_teacher)
    pipe = pipes(num_draws=1)
    cache = CacheSource(teacher, tmp_path, CPU, num_draws=1, log=lambda m: None)
    cache.attach(["layer2"], pipe)
    batch = pipe.batch(0, 0)
    want = cache.outputs(batch)
    return teacher, pipe, cache.dir, batch, want


def reopen(teacher, pipe, root):
    logs = []
    cache = CacheSource(teacher, root, CPU, num_draws=1, log=logs.append)
    cache.attach(["layer2"], pipe)
    return cache, logs


def nan_over_logits(folder):
    arr = np.load(folder / "logits_d0.npy", mmap_mode="r+")
    arr[:5] = np.nan
    arr.flush()


def truncate_shard(folder):
    path = folder / "feat0_d0.npy"
    path.write_bytes(path.read_bytes()[:-1000])


def meta_not_json(folder):
    path = folder / "meta.json"
    path.write_text(path.read_text()[:40])


def shard_missing(folder):
    (folder / "feat0_d0.npy").unlink()


def meta_without_checksums(folder):
    path = folder / "meta.json"
    meta = json.loads(path.read_text())
    del meta["shards"]
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("damage, reason", [
    (nan_over_logits, "logits_d0.npy does not match its CRC-32"),
    (truncate_shard, "feat0_d0.npy has"),
    (meta_not_json, "meta.json is not a JSON object"),
    (shard_missing, "feat0_d0.npy is missing"),
    (meta_without_checksums, "meta.json records no checksums"),
])
def test_a_damaged_cache_is_named_and_rebuilt(built, damage, reason):
    teacher, pipe, folder, batch, want = built
    damage(folder)
    cache, logs = reopen(teacher, pipe, folder.parent)
    assert cache.dir == folder
    assert reason in logs[0] and "rebuilding" in logs[0] and "built" in logs[1]
    got = cache.outputs(batch)
    assert torch.equal(got.logits, want.logits)
    assert torch.equal(got.features["layer2"], want.features["layer2"])
    again, logs = reopen(teacher, pipe, folder.parent)
    assert logs == [f"teacher cache: reusing {folder}"]


def test_an_intact_cache_is_reused_and_its_checksums_are_recorded(built):
    teacher, pipe, folder, _, _ = built
    meta = json.loads((folder / "meta.json").read_text())
    assert sorted(meta["shards"]) == ["feat0_d0.npy", "logits_d0.npy"]
    assert meta["shards"]["logits_d0.npy"]["bytes"] == (folder / "logits_d0.npy").stat().st_size
    _, logs = reopen(teacher, pipe, folder.parent)
    assert logs == [f"teacher cache: reusing {folder}"]


def test_a_teacher_with_nan_outputs_is_refused_while_writing(tiny_teacher, tmp_path):
    teacher = api.load_model(tiny_teacher)
    with torch.no_grad():
        teacher.fc.bias[3] = float("nan")
    cache = CacheSource(teacher, tmp_path, CPU, num_draws=1, log=lambda m: None)
    with pytest.raises(UsageError, match=r"teacher's logits for samples 0-191 of draw 0 are "
                                         r"not finite; check the weights of resnet14"):
        cache.attach([], pipes(num_draws=1))
    assert list(tmp_path.iterdir()) == []


def test_fp16_overflow_says_to_store_fp32(tiny_teacher, tmp_path):
    teacher = api.load_model(tiny_teacher)
    with torch.no_grad():
        teacher.fc.weight.mul_(1e6)
    cache = CacheSource(teacher, tmp_path, CPU, num_draws=1, log=lambda m: None)
    with pytest.raises(UsageError, match="overflow fp16; set teacher.cache.precision: fp32"):
        cache.attach([], pipes(num_draws=1))
    fp32 = CacheSource(teacher, tmp_path, CPU, num_draws=1, log=lambda m: None, precision="fp32")
    fp32.attach([], pipes(num_draws=1))
    assert torch.isfinite(fp32.outputs(pipes(num_draws=1).batch(0, 0)).logits).all()


def test_a_half_built_cache_of_a_killed_builder_is_removed(built, tmp_path):
    teacher, pipe, folder, _, _ = built
    dead = folder.with_name(f"{folder.name}.building-999999999")
    dead.mkdir()
    (dead / "logits_d0.npy").write_bytes(b"partial")
    meta_not_json(folder)
    reopen(teacher, pipe, folder.parent)
    assert not dead.exists()
