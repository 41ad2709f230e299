"""Models from outside the zoo: factories in a user's .py file, torchvision names with
weights files in other libraries' layouts, derivation on torchvision families, and the
parts (hooks, FLOPs, ONNX, teacher replicas) that must work on them."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file

from edgedistill import api
from edgedistill.config import ModelConfig
from edgedistill.errors import UsageError
from edgedistill.models import (
    FeatureExtractor,
    count_flops,
    create_model,
    derive_student,
    resolve_layer_aliases,
)
from edgedistill.models.foreign import build, read_state_dict

NETS = '''
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes, width):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)
        self.stage_names = ["relu"]

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def make_net(num_classes=10, width=8):
    return Net(num_classes, width)


def fixed_classes(width=8):
    return Net(7, width)


def not_a_model():
    return 3
'''


@pytest.fixture
def nets(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(textwrap.dedent(NETS))
    return path


def test_a_factory_in_a_py_file_builds_with_the_data_sizes_and_rebuilds_from_its_spec(nets):
    model = build(f"{nets}:make_net", 4, 3, kwargs={"width": 6})
    assert model.fc.out_features == 4 and model.conv.out_channels == 6
    assert model.spec == {"name": f"{nets}:make_net", "width": 6, "num_classes": 4,
                          "in_channels": 3}
    again = create_model(**model.spec)
    assert type(again) is type(model)  # the file is imported once
    assert not model.relu.inplace  # hooks see the value the module returned


def test_factory_errors_name_the_file_the_function_and_the_fix(nets, tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        build(f"{tmp_path / 'none.py'}:make_net")
    with pytest.raises(UsageError, match="has no function 'make_nett'.*make_net"):
        build(f"{nets}:make_nett")
    with pytest.raises(UsageError, match="cannot import 'no_such_pkg.nets'"):
        build("no_such_pkg.nets:make_net")
    with pytest.raises(UsageError, match="returned int, not a torch nn.Module"):
        build(f"{nets}:not_a_model")
    with pytest.raises(UsageError, match="num_classes=7 but 10 is needed"):
        build(f"{nets}:fixed_classes", 10, 3)
    with pytest.raises(UsageError, match="unexpected keyword argument 'depth'"):
        build(f"{nets}:make_net", kwargs={"depth": 3})


def _resnet18_state(prefix: str = "") -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(num_classes=10)
    return {prefix + k: v for k, v in ref.state_dict().items()}


@pytest.mark.parametrize("layout", ["module.", "_orig_mod.", "nested", "safetensors"])
def test_torchvision_weights_load_from_other_libraries_layouts(tmp_path, layout):
    state = _resnet18_state()
    if layout == "nested":  # a training script's full checkpoint
        path = tmp_path / "ckpt.pth"
        torch.save({"epoch": 90, "state_dict": {f"module.{k}": v for k, v in state.items()},
                    "optimizer": {"lr": 0.1}}, path)
    elif layout == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file(state, str(path))
    else:
        path = tmp_path / "w.pt"
        torch.save({layout + k: v for k, v in state.items()}, path)
    model = api.load_model(ModelConfig(name="torchvision:resnet18", weights=str(path)),
                           num_classes=10, in_channels=3)
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items())
    assert model.weights_info["loaded_keys"] == len(state)
    assert len(model.weights_info["sha256"]) == 64


def test_weights_that_do_not_fit_list_the_missing_and_unexpected_keys(tmp_path):
    state = _resnet18_state()
    state.pop("fc.weight")
    state["head.weight"] = torch.zeros(3)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    ref = ModelConfig(name="torchvision:resnet18", weights=str(path))
    with pytest.raises(UsageError) as err:
        api.load_model(ref, num_classes=10, in_channels=3)
    text = str(err.value)
    assert "missing 1 (fc.weight)" in text and "unexpected 1 (head.weight)" in text
    assert "strict: false" in text and len(text.splitlines()) == 1
    loose = api.load_model(ref.model_copy(update={"strict": False}), 10, 3)
    assert torch.equal(loose.conv1.weight, state["conv1.weight"])
    assert loose.weights_info["skipped_keys"] == ["fc.weight", "head.weight"]


def test_a_class_count_mismatch_is_named_with_both_shapes(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(_resnet18_state(), path)
    with pytest.raises(UsageError, match=r"fc.weight: \[10, 512\] in the file, \[5, 512\]"):
        api.load_model(ModelConfig(name="torchvision:resnet18", weights=str(path)), 5, 3)


def test_weights_files_are_read_without_unpickling_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)  # a pickled module, not tensors
    with pytest.raises(UsageError, match="cannot be read"):
        read_state_dict(path)


def test_pretrained_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached download to fall back on
    with pytest.raises(UsageError) as err:
        build("torchvision:resnet18", 1000, 3, pretrained=True)
    assert "must download https://download.pytorch.org" in str(err.value)
    assert len(str(err.value).splitlines()) == 1


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2", "densenet121"])
def test_torchvision_students_derive_smaller_and_run(arch):
    teacher = create_model(f"torchvision:{arch}", num_classes=10, in_channels=3)
    size = sum(p.numel() for p in teacher.parameters())
    x = torch.rand(2, 3, 32, 32)
    for mode in ["shallower", "narrower", "both"]:
        student = create_model(**derive_student(teacher.spec, mode))
        assert sum(p.numel() for p in student.parameters()) < 0.6 * size, mode
        assert student(x).shape == (2, 10)
        assert len(resolve_layer_aliases(student, ["stage1", "stage-1"])) == 2


def test_what_cannot_be_derived_is_named(nets):
    with pytest.raises(UsageError, match="narrower students cannot be derived from "
                                         "'torchvision:squeezenet1_0'"):
        derive_student(create_model("torchvision:squeezenet1_0", 10, 3).spec, "narrower")
    factory = build(f"{nets}:make_net", 10, 3)
    with pytest.raises(UsageError, match="no shallower student can be derived from factory "
                                         "model .*structure .* is unknown"):
        derive_student(factory.spec, "shallower")


def _export_matches(model, shape, tmp_path) -> float:
    from edgedistill.export.onnx import export_onnx, run_session, session

    model.eval()
    path = export_onnx(model, shape, tmp_path / "m.onnx")
    x = torch.rand(shape)
    with torch.no_grad():
        ref = model(x).numpy()
    return float(np.abs(run_session(session(path), x.numpy()) - ref).max())


@pytest.mark.parametrize("which", ["factory", "torchvision"])
def test_hooks_flops_and_onnx_export_work_on_foreign_models(nets, tmp_path, which):
    if which == "factory":
        model, layer = build(f"{nets}:make_net", 10, 3), "relu"
    else:
        model, layer = create_model("torchvision:resnet18", 10, 3), "layer2.1.relu"
    shape = (1, 3, 32, 32)
    with FeatureExtractor(model, [layer]) as hooks:
        model.eval()(torch.rand(shape))
        assert hooks.tensors()[0].dim() == 4
    flops = count_flops(model, shape[1:])
    want = 2 * 3 * 8 * 9 * 32 * 32 + 2 * 8 * 10 if which == "factory" else None
    assert flops == want if want else flops > 50e6
    assert _export_matches(model, shape, tmp_path) < 1e-4


def test_a_replica_builds_a_factory_teacher_and_says_when_it_cannot(nets, tmp_path):
    from edgedistill.elastic.protocol import InputSpec, Request
    from edgedistill.elastic.replica import ReplicaWorker
    from edgedistill.elastic.spec import ReplicaSpec

    inputs = InputSpec(shape=(3, 8, 8), mean=(0.5,) * 3, std=(0.25,) * 3)
    ref = ModelConfig(factory=f"{nets}:make_net", kwargs={"num_classes": 5})
    worker = ReplicaWorker(0, ref, ReplicaSpec(), ["relu"], inputs)
    worker.load()
    reply = worker.infer(Request((0, 0), np.zeros((2, 3, 8, 8), np.uint8)))
    assert reply.replica == 0
    gone = ModelConfig(factory=f"{tmp_path / 'elsewhere.py'}:make_net")
    with pytest.raises(UsageError, match="must be importable on every node"):
        ReplicaWorker(1, gone, ReplicaSpec(), [], inputs).load()


def test_timm_models_build_with_the_data_sizes():
    pytest.importorskip("timm")
    model = build("timm:resnet18", 10, 1).eval()
    assert model(torch.rand(1, 1, 32, 32)).shape == (1, 10)
    assert model.spec == {"name": "timm:resnet18", "num_classes": 10, "in_channels": 1}


@pytest.mark.parametrize("layout", ["module.", "safetensors"])
def test_a_timm_model_loads_weights_saved_from_timm_itself(tmp_path, layout):
    """``timm:NAME`` with ``weights: PATH``: a state dict saved from a model timm built
    (here, since no published weights can be fetched) loads into the model edgedistill
    builds, key for key, and the two compute the same logits."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(3)
    ref = timm.create_model("resnet10t", num_classes=4, in_chans=3).eval()
    state = ref.state_dict()
    if layout == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        path = tmp_path / "w.pth"
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    model = api.load_model(ModelConfig(name="timm:resnet10t", weights=str(path)), 4, 3)
    assert model.spec == {"name": "timm:resnet10t", "num_classes": 4, "in_channels": 3}
    assert model.weights_info["loaded_keys"] == len(state)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    with pytest.raises(UsageError, match=r"fc.weight: \[4, 512\] in the file, \[7, 512\]"):
        api.load_model(ModelConfig(name="timm:resnet10t", weights=str(path)), 7, 3)


@pytest.mark.parametrize("which", ["factory", "torchvision"])
def test_the_splitter_cuts_foreign_models_where_their_outputs_agree(nets, which):
    from edgedistill.split.splitter import split_model, split_points

    model = (build(f"{nets}:make_net", 10, 3) if which == "factory"
             else create_model("torchvision:resnet18", 10, 3)).eval()
    points = split_points(model)
    at = "layer2" if which == "torchvision" else points[0]
    assert at in points
    head, tail = split_model(model, at)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(tail(head(x)), model(x), atol=1e-5)


@pytest.mark.slow
def test_a_ray_pool_serves_a_factory_teacher_named_by_a_relative_path(nets, monkeypatch):
    """Replicas run with another working directory: the pool makes the factory file and
    weights paths absolute, and every replica serves the same weights as the online teacher.
    (Slow: starts an embedded Ray, about 30 s on 2 shared cores.)"""
    import ray

    from edgedistill.config import PoolConfig
    from edgedistill.data import BatchPipeline, load_dataset
    from edgedistill.distill import OnlineSource
    from edgedistill.elastic.source import PoolSource

    monkeypatch.chdir(nets.parent)
    torch.manual_seed(0)
    torch.save(build(f"{nets}:make_net", 10, 3, kwargs={"width": 4}).state_dict(), "w.pt")
    ref = ModelConfig(factory="nets.py:make_net", kwargs={"num_classes": 10, "width": 4},
                      weights="w.pt")
    train, _ = load_dataset("synthetic", num_train=64, num_test=16, image_size=8)
    pipe = BatchPipeline(train, 16, train=True, seed=0)
    online = OnlineSource(api.load_model(ref), torch.device("cpu"))
    online.attach(["relu"], pipe)
    want = online.outputs(pipe.batch(0, 0))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        cfg = PoolConfig.model_validate({"replicas": [{"num_cpus": 1}], "wire_precision":
                                         "fp32"})
        src = PoolSource(ref, cfg, torch.device("cpu"))
        src.attach(["relu"], pipe)
        try:
            got = src.outputs(pipe.batch(0, 0))
        finally:
            src.close()
    finally:
        ray.shutdown()
    assert torch.allclose(got.logits, want.logits, atol=1e-5)
    assert torch.allclose(got.features["relu"], want.features["relu"], atol=1e-5)


@pytest.mark.parametrize("raw, message", [
    ({"teacher": {"source": {"factory": "nets.py:make", "weigths": "w.pt"}}},
     "teacher.source: .*unknown key 'weigths'; allowed keys here: name, factory, kwargs, "
     "weights"),
    ({"student": {"derive": "both", "weights": "w.pt"}}, "a derived student starts from fresh"),
    ({"student": {"factory": "make_net"}}, "'package.module:function' or 'path/to/file.py"),
    ({"student": {"name": "resnet8", "factory": "a.py:f"}}, "exactly one of student.name"),
])
def test_model_configs_refuse_mistakes_at_load_naming_the_key(raw, message):
    from edgedistill.config import DistillExperiment, validate

    base = {"teacher": {"source": "zoo:x"}, "student": {"name": "resnet8"}}
    with pytest.raises(UsageError, match=message):
        validate({**base, **raw}, DistillExperiment)


def test_a_narrower_torchvision_resnet_keeps_torchvisions_keys_and_halves_its_channels():
    from torchvision.models import resnet18

    teacher = create_model("torchvision:resnet18", num_classes=10, in_channels=3)
    spec = derive_student(teacher.spec, "narrower", width=0.5)
    student = create_model(**spec)
    assert spec["width"] == 0.5
    assert set(student.state_dict()) == set(resnet18(num_classes=10).state_dict())
    assert student.conv1.out_channels == 32 and student.layer4[0].conv1.out_channels == 256
    assert student.fc.in_features == 256
    full = sum(p.numel() for p in teacher.parameters())
    assert 0.2 * full < sum(p.numel() for p in student.parameters()) < 0.3 * full
    assert student(torch.rand(2, 3, 64, 64)).shape == (2, 10)
