"""Weight layout: channels_last by default, with the strided 1x1 convolutions that corrupt
torch's CPU heap in channels_last run in NCHW inside the model, decided from each layer's
own attributes; the same training either way; a real run of the issue's repro."""

import json
import logging
import subprocess
import sys

import pytest
import torch
from PIL import Image

from edgedistill import api
from edgedistill.config import TrainExperiment
from edgedistill.errors import UsageError
from edgedistill.models import create_model
from edgedistill.train.checkpoint import save_weights
from edgedistill.train.device import memory_format, to_layout
from edgedistill.train.layout import hazardous_layers, is_hazardous, is_nchw
from tests.conftest import ROOT, run_cli, tiny_train_config

CPU = torch.device("cpu")
Conv = torch.nn.Conv2d


def is_channels_last(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last) and not is_nchw(t)


def test_memory_format_names():
    assert memory_format("auto") is torch.channels_last
    assert memory_format("contiguous") is torch.contiguous_format
    with pytest.raises(UsageError, match="memory_format 'nhwc'"):
        memory_format("nhwc")


def test_the_rule_reads_only_the_layers_attributes():
    """Crashes were seen at 1-15 input channels (benchmarks/layout_safety.py); the bound
    is 32 per group, for any stride above 1 on either axis, padding or not."""
    for conv in (Conv(1, 16, 1, 2), Conv(8, 16, 1, 2), Conv(31, 64, 1, 2), Conv(8, 16, 1, 3),
                 Conv(8, 16, 1, (1, 2)), Conv(8, 16, 1, 2, padding=1),
                 Conv(64, 64, 1, 2, groups=4)):
        assert is_hazardous(conv), conv
    for module in (Conv(32, 64, 1, 2), Conv(8, 16, 1, 1), Conv(8, 16, 3, 2),
                   Conv(8, 16, 2, 2), torch.nn.ConvTranspose2d(8, 16, 1, 2),
                   torch.nn.Linear(8, 16)):
        assert not is_hazardous(module), module
    full = create_model("resnet20", num_classes=3, in_channels=3)
    half = create_model("resnet20", num_classes=3, in_channels=3, width=0.5)
    assert hazardous_layers(full) == ["layer2.0.downsample.0"]  # 16 in; layer3's has 32
    assert hazardous_layers(half) == ["layer2.0.downsample.0", "layer3.0.downsample.0"]


def watch_inputs(model, path):
    """What the hazardous layer's convolution and the next block are handed."""
    seen = {}
    conv = model.get_submodule(path)
    conv.register_forward_pre_hook(lambda m, a: seen.update(
        conv_input_nchw=is_nchw(a[0]), conv_weight_nchw=is_nchw(m.weight)))
    conv.register_forward_hook(lambda m, a, out: seen.update(
        conv_output_channels_last=is_channels_last(out)))
    return seen


def test_hazardous_layers_run_nchw_and_the_rest_channels_last():
    torch.manual_seed(0)
    plain = create_model("resnet20", num_classes=3, in_channels=3, width=0.5)
    model = to_layout(create_model("resnet20", num_classes=3, in_channels=3, width=0.5), CPU)
    model.load_state_dict(plain.state_dict())
    assert is_channels_last(model.conv1.weight)
    assert is_channels_last(model.layer3.get_submodule("0.conv1").weight)
    seen = watch_inputs(model, "layer3.0.downsample.0")
    assert is_nchw(model.get_submodule("layer3.0.downsample.0").weight)
    x = torch.randn(8, 3, 64, 64)
    model.eval(), plain.eval()  # batch statistics would amplify rounding differences
    out = model(x)
    assert seen == {"conv_input_nchw": True, "conv_weight_nchw": True,
                    "conv_output_channels_last": True}
    out.pow(2).mean().backward()
    ref = plain(x)
    ref.pow(2).mean().backward()
    assert torch.allclose(out, ref, atol=1e-4)
    grads = dict(plain.named_parameters())
    for name, p in model.named_parameters():
        ref_grad = grads[name].grad
        assert (p.grad - ref_grad).norm() <= 1e-4 * ref_grad.norm(), name


def test_one_channel_inputs_and_a_re_laid_weight_are_put_back_in_nchw():
    """``contiguous()`` keeps the channels_last strides of a 1-channel tensor (and of a 1x1
    weight), which oneDNN then takes for channels_last: the hook re-strides both."""
    conv = to_layout(Conv(1, 16, 1, 2), CPU)
    seen = watch_inputs(torch.nn.Sequential(conv), "0")
    x = torch.randn(2, 1, 8, 8).to(memory_format=torch.channels_last)
    assert x.is_contiguous() and not is_nchw(x)
    conv(x)
    assert seen["conv_input_nchw"]
    wide = to_layout(Conv(3, 16, 1, 2), CPU).to(memory_format=torch.channels_last)
    assert not is_nchw(wide.weight)  # a later .to() undoes the layout choice...
    seen = watch_inputs(torch.nn.Sequential(wide), "0")
    wide(torch.randn(2, 3, 8, 8))
    assert seen["conv_weight_nchw"] and is_nchw(wide.weight)  # ...and the hook redoes it


def test_explicit_channels_last_gets_the_fallback_and_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="edgedistill.train"):
        model = to_layout(create_model("resnet8", num_classes=10, in_channels=1, width=0.25),
                          CPU, "channels_last")
    assert "layer2.0.downsample.0" in caplog.text and "run in NCHW" in caplog.text
    assert is_nchw(model.get_submodule("layer2.0.downsample.0").weight)
    assert is_channels_last(model.conv1.weight)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgedistill.train"):
        to_layout(create_model("resnet8", num_classes=10, in_channels=1, width=0.25), CPU)
    assert caplog.text == ""  # auto: the fallback is the default's own business
    contiguous = to_layout(create_model("resnet8", num_classes=10, in_channels=1), CPU,
                           "contiguous")
    assert all(is_nchw(p) for p in contiguous.parameters())
    assert not contiguous.get_submodule("layer2.0.downsample.0")._forward_pre_hooks


def test_contiguous_and_channels_last_train_alike(tmp_path):
    """The layout changes speed, not the mathematics: same seed, same loss to float
    rounding (resnet8 at width 0.5 has a hazardous 8-channel shortcut)."""
    loss = {}
    for fmt in ("contiguous", "channels_last"):
        cfg = TrainExperiment.model_validate(tiny_train_config(**{
            "model.kwargs": {"width": 0.5}, "data.limit_train": 256, "data.limit_test": 128,
            "train.epochs": 1, "train.memory_format": fmt}))
        api.train(cfg, tmp_path / fmt, progress=False)
        record = json.loads((tmp_path / fmt / "metrics.jsonl").read_text().splitlines()[0])
        loss[fmt] = record["train_loss"]
    assert loss["channels_last"] == pytest.approx(loss["contiguous"], rel=1e-3)


def grid(tmp_path, *args: str) -> dict:
    """benchmarks/layout_safety.py grid: every cell in fresh forked processes."""
    out = tmp_path / "grid.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.layout_safety", "grid",
                          "--json", str(out), *args], capture_output=True, text=True,
                         cwd=ROOT, timeout=1200)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(out.read_text())


def test_plain_channels_last_crashes_this_torch(tmp_path):
    """The control: the probe sees the crash that the fallback exists for (if this fails,
    torch no longer crashes here and the fallback could be dropped)."""
    result = grid(tmp_path, "--layout", "raw", "--channels", "2,8,15", "--kernels", "1",
                  "--strides", "2", "--sizes", "64", "--batches", "8")
    assert result["crashed_cells"] >= 2, result


def test_the_fallback_survives_the_crashing_shapes(tmp_path):
    """Under glibc's checking allocator, which aborts on heap damage that a plain run
    survives; the many-repetition issue grid is the slow test below."""
    result = grid(tmp_path, "--layout", "auto", "--channels", "1-16,31-33", "--kernels", "1",
                  "--strides", "2", "--sizes", "56,64,112", "--batches", "8",
                  "--repeats", "2", "--debug-malloc")
    assert result["cells"] == 57 and result["debug_malloc"], result
    assert result["crashes"] == [], result


@pytest.mark.slow
def test_the_fallback_survives_the_issue_grid_many_times(tmp_path):
    """1,536 shapes (in channels 1-32, kernel 1 or 3, stride 1 or 2, 16-112 px, batch 8 and
    32), five fresh processes each, checking allocator (about 15 minutes on 2 cores)."""
    result = grid(tmp_path, "--layout", "auto", "--repeats", "5", "--debug-malloc")
    assert result["cells"] == 1536 and result["crashes"] == [], result


def write_jpegs(root, size=64, mode="RGB"):
    """Three classes of noisy JPEGs, 16 train and 4 test each."""
    gen = torch.Generator().manual_seed(0)
    for split, count in (("train", 16), ("test", 4)):
        for label, name in enumerate(("a", "b", "c")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = (torch.rand(size, size, 3, generator=gen) * 80 + 60 * label)
                img = Image.fromarray(pixels.to(torch.uint8).numpy(), "RGB").convert(mode)
                img.save(folder / f"{i}.jpg")


def test_the_issues_repro_trains_without_a_signal(tmp_path):
    """64 px RGB JPEGs, an untrained resnet20 teacher, a half-width derived student, the
    default layout: this died by SIGSEGV/SIGABRT in the first backward pass."""
    write_jpegs(tmp_path / "images")
    teacher = create_model("resnet20", num_classes=3, in_channels=3)
    save_weights(tmp_path / "teacher.safetensors", teacher.state_dict(), teacher.spec)
    cfg = {"name": "repro", "seed": 0,
           "data": {"dataset": "imagefolder", "root": str(tmp_path / "images"),
                    "batch_size": 32, "eval_batch_size": 64},
           "teacher": {"source": str(tmp_path / "teacher.safetensors")},
           "student": {"derive": "narrower", "width": 0.5},
           "train": {"epochs": 2, "threads": 1, "progress": False}}
    (tmp_path / "cfg.yaml").write_text(json.dumps(cfg))
    run = run_cli("distill", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "run"),
                  timeout=600)
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs_run"] == 2
