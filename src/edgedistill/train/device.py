"""Device choice in one place: CUDA with bf16 autocast when present, else CPU."""

from __future__ import annotations

import contextlib

import torch

from edgedistill.errors import UsageError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UsageError(f"device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} asked for but CUDA is not available; use cpu or auto")
    return dev


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA; a no-op on CPU, where fp32 is faster for small convs."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(name: str = "auto") -> torch.memory_format:
    """The layout a name asks for (``auto`` asks for channels_last; see ``to_layout``)."""
    if name in ("auto", "channels_last"):
        return torch.channels_last
    if name == "contiguous":
        return torch.contiguous_format
    raise UsageError(f"memory_format {name!r} is not one of auto, channels_last, contiguous")


def channels_last_hazard(module: torch.nn.Module) -> str | None:
    """The first layer whose channels_last backward corrupts the heap in this torch.

    torch 2.14.1 on CPU aborts (double free, segfault) in the weight gradient of a 1x1
    convolution with stride > 1 and 2 to 7 input channels in channels_last layout
    (tests/train/test_anneal.py reproduces the grid in a subprocess). Such layers appear
    in very narrow students (resnet8 at width 0.25 has a 4-channel strided shortcut).
    """
    for path, m in module.named_modules():
        if isinstance(m, torch.nn.Conv2d) and tuple(m.kernel_size) == (1, 1) \
                and max(m.stride) > 1 and 1 < m.in_channels // m.groups < 8:
            return path
    return None


def to_layout(module: torch.nn.Module, device: torch.device, fmt: str = "auto"
              ) -> torch.nn.Module:
    """Move ``module`` to ``device`` with its 4-D weights in the chosen layout.

    ``auto`` is channels_last: on this project's CPUs (oneDNN) a training step of the
    CIFAR ResNets is 1.24-1.33x faster than in the default NCHW layout
    (benchmarks/train_throughput.py, RESULTS.md), and on CUDA it is the layout
    tensor-core convolutions want. ``auto`` keeps NCHW for a model with a layer that crashes in channels_last on
    CPU (``channels_last_hazard``); asking for channels_last explicitly there is refused.
    """
    fmt_ = memory_format(fmt)
    if fmt_ is torch.channels_last and device.type == "cpu":
        hazard = channels_last_hazard(module)
        if hazard is not None:
            if fmt == "channels_last":
                raise UsageError(
                    f"train.memory_format=channels_last: layer {hazard!r} (a strided 1x1 "
                    "convolution with 2-7 input channels) crashes in channels_last on CPU "
                    "with this torch; use memory_format auto or contiguous")
            fmt_ = torch.contiguous_format
    return module.to(device=device, memory_format=fmt_)
