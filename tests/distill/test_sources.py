"""The cache source answers what the online teacher would have answered for the same
augmented batch, is reused across runs, and is never used for another teacher."""

import json

import pytest
import torch

from edgedistill import api
from edgedistill.config import DataConfig
from edgedistill.distill.cache import CacheSource, dense_from_topk
from edgedistill.distill.sources import OnlineSource
from edgedistill.errors import UsageError
from edgedistill.models import create_model

CPU = torch.device("cpu")


def pipes(num_draws):
    cfg = DataConfig(dataset="fashion_mnist", limit_train=192, limit_test=64, batch_size=64)
    train, test = api.build_data(cfg, 0)
    return api.build_pipelines(cfg, train, test, 0, CPU, num_draws=num_draws)[0]


def test_cache_matches_online_teacher_with_augmentation(tiny_teacher, tmp_path):
    teacher = api.load_model(tiny_teacher)
    pipe = pipes(num_draws=2)
    online = OnlineSource(teacher, CPU)
    online.attach(["layer2"], pipe)
    cache = CacheSource(teacher, tmp_path, CPU, num_draws=2, log=lambda m: None)
    cache.attach(["layer2"], pipe)
    for epoch in range(3):  # epoch 2 reuses draw 0
        batch = pipe.batch(epoch, 1)
        want, got = online.outputs(batch), cache.outputs(batch)
        assert torch.allclose(got.logits, want.logits, atol=2e-2, rtol=1e-2)
        assert torch.allclose(got.features["layer2"], want.features["layer2"], atol=2e-2)


def test_fp32_cache_holds_the_online_teachers_values(tiny_teacher, tmp_path):
    """``precision: fp32`` stores what the online teacher computes (to float rounding
    of a different batch composition), under its own key, never mixed with fp16."""
    teacher = api.load_model(tiny_teacher)
    pipe = pipes(num_draws=2)
    online = OnlineSource(teacher, CPU)
    online.attach(["layer2"], pipe)
    cache = CacheSource(teacher, tmp_path, CPU, num_draws=2, log=lambda m: None,
                        precision="fp32")
    cache.attach(["layer2"], pipe)
    half = CacheSource(teacher, tmp_path, CPU, num_draws=2, log=lambda m: None)
    half.attach(["layer2"], pipe)
    assert cache.dir != half.dir
    for epoch in range(2):
        batch = pipe.batch(epoch, 1)
        want, got = online.outputs(batch), cache.outputs(batch)
        assert got.logits.dtype == torch.float32
        assert torch.allclose(got.logits, want.logits, atol=1e-5, rtol=1e-5)
        assert torch.allclose(got.features["layer2"], want.features["layer2"], atol=1e-5)
    with pytest.raises(UsageError, match="precision 'bf16'"):
        CacheSource(teacher, tmp_path, CPU, precision="bf16")


def test_cache_is_reused_and_keyed_by_teacher(tiny_teacher, tmp_path):
    teacher = api.load_model(tiny_teacher)
    pipe = pipes(num_draws=1)
    logs = []
    first = CacheSource(teacher, tmp_path, CPU, num_draws=1, log=logs.append)
    first.attach([], pipe)
    second = CacheSource(teacher, tmp_path, CPU, num_draws=1, log=logs.append)
    second.attach([], pipe)
    assert "built" in logs[0] and "reusing" in logs[1]
    other = create_model("resnet14", num_classes=10, in_channels=1)
    third = CacheSource(other, tmp_path, CPU, num_draws=1, log=logs.append)
    third.attach([], pipe)
    assert third.dir != first.dir and "built" in logs[2]


def test_tampered_cache_is_refused(tiny_teacher, tmp_path):
    teacher = api.load_model(tiny_teacher)
    pipe = pipes(num_draws=1)
    src = CacheSource(teacher, tmp_path, CPU, num_draws=1, log=lambda m: None)
    src.attach([], pipe)
    meta = json.loads((src.dir / "meta.json").read_text())
    meta["key"] = "0" * 64
    (src.dir / "meta.json").write_text(json.dumps(meta))
    again = CacheSource(teacher, tmp_path, CPU, num_draws=1, log=lambda m: None)
    with pytest.raises(UsageError, match="another teacher or dataset"):
        again.attach([], pipe)


def test_draw_mismatch_is_a_usage_error(tiny_teacher, tmp_path):
    src = CacheSource(api.load_model(tiny_teacher), tmp_path, CPU, num_draws=3)
    with pytest.raises(UsageError, match="num_draws"):
        src.attach([], pipes(num_draws=2))


def test_topk_keeps_the_top_and_suppresses_the_rest():
    logits = torch.tensor([[3.0, 1.0, -2.0, 0.5], [0.0, 4.0, 2.0, 1.0]])
    values, idx = logits.topk(2, dim=1)
    dense = dense_from_topk(values, idx, 4)
    assert torch.equal(dense.argsort(1, descending=True)[:, :2], idx)
    assert torch.equal(dense.gather(1, idx), values)
    probs = dense.softmax(1)
    assert (probs.gather(1, idx).sum(1) > 0.999).all()


def test_topk_cache_gives_same_argmax(tiny_teacher, tmp_path):
    teacher = api.load_model(tiny_teacher)
    pipe = pipes(num_draws=1)
    online = OnlineSource(teacher, CPU)
    online.attach([], pipe)
    cache = CacheSource(teacher, tmp_path, CPU, num_draws=1, top_k=3, log=lambda m: None)
    cache.attach([], pipe)
    batch = pipe.batch(0, 0)
    assert torch.equal(cache.outputs(batch).logits.argmax(1), online.outputs(batch).logits.argmax(1))


SOURCE_PLUGIN = '''
from edgedistill.config import Strict
from edgedistill.distill.online import OnlineSource
from edgedistill.distill.sources import SOURCES

SERVED = []


class SharpenedSettings(Strict):
    factor: float = 1.0


@SOURCES.register("sharpened", settings=SharpenedSettings)
class SharpenedSource(OnlineSource):
    """The online teacher with its logits multiplied by ``factor``."""

    def __init__(self, teacher, device, factor):
        super().__init__(teacher, device, amp=False)
        self.factor = factor

    @classmethod
    def from_config(cls, cfg, teacher, device, run_dir):
        return cls(teacher, device, cfg.teacher.settings().factor)

    def outputs(self, batch):
        out = super().outputs(batch)
        SERVED.append((batch.epoch, batch.step))
        out.logits = out.logits * self.factor
        return out
'''


def test_a_plugin_source_from_a_user_file_is_checked_and_trains(tiny_teacher, tmp_path):
    """A source in the user's own file: ``teacher.mode`` and its settings section are
    checked against the registry at load, and the run reaches its teacher through it."""
    from edgedistill.config import DistillExperiment, validate
    from edgedistill.distill.run import run_distill
    from edgedistill.distill.sources import SOURCES
    from edgedistill.plugins import load_plugins
    from tests.distill.conftest import distill_config

    plugin = tmp_path / "sharpen.py"
    plugin.write_text(SOURCE_PLUGIN)
    raw = distill_config(tiny_teacher, **{"train.epochs": 1, "plugins": [str(plugin)],
                                          "teacher.mode": "sharpened",
                                          "teacher.sharpened": {"factor": 2.0}})
    cfg = validate(raw, DistillExperiment)
    assert "sharpened" in SOURCES.names() and cfg.teacher.settings().factor == 2.0
    for section, message in [({"factr": 2.0}, "unknown teacher.sharpened key 'factr' for "
                                               "teacher source 'sharpened'; allowed: factor"),
                             ({"factor": "much"}, "factor: Input should be a valid number")]:
        with pytest.raises(UsageError, match=message):
            validate({**raw, "teacher": {**raw["teacher"], "sharpened": section}},
                     DistillExperiment)
    with pytest.raises(UsageError, match="unknown key teacher.sharpend; allowed keys here: "
                                         "allow_unfinished, cache, mode, pool, sharpened"):
        validate({**raw, "teacher": {**raw["teacher"], "sharpend": {}}}, DistillExperiment)

    summary = run_distill(cfg, tmp_path / "run", progress=False)
    served = load_plugins([str(plugin)])[0].SERVED
    assert summary["teacher_mode"] == "sharpened"
    # the Distiller's setup probes batch (0, 0) once, then every training step asks
    assert served == [(0, 0)] + [(0, step) for step in range(256 // 64)]
    saved = api.run_config(tmp_path / "run", DistillExperiment)
    assert saved.teacher.settings().factor == 2.0 and saved.teacher.mode == "sharpened"


def test_a_source_that_rebuilds_its_teacher_refuses_a_python_module(tiny_teacher, tmp_path):
    """Pool replicas build the teacher from ``teacher.source``: a module given from Python
    cannot travel to them, and the source (not a mode check in run.py) says so."""
    from edgedistill.config import DistillExperiment
    from edgedistill.distill.run import run_distill
    from edgedistill.distill.sources import SOURCES
    from tests.distill.conftest import distill_config

    assert SOURCES.get("pool").rebuilds_teacher and not SOURCES.get("cache").rebuilds_teacher
    cfg = DistillExperiment.model_validate(distill_config(tiny_teacher, **{"teacher.mode": "pool"}))
    with pytest.raises(UsageError, match="teacher.mode pool needs a teacher its replicas can "
                                         "build"):
        run_distill(cfg, tmp_path / "run", progress=False, teacher=api.load_model(tiny_teacher))
    assert not (tmp_path / "run").exists()
