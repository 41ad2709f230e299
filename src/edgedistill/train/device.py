"""Device choice in one place: CUDA with bf16 autocast when present, else CPU."""

from __future__ import annotations

import contextlib
import logging

import torch

from edgedistill.errors import UsageError
from edgedistill.train.layout import NCHW_BELOW_IN_CHANNELS, run_in_nchw

log = logging.getLogger("edgedistill.train")


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


def to_layout(module: torch.nn.Module, device: torch.device, fmt: str = "auto"
              ) -> torch.nn.Module:
    """Move ``module`` to ``device`` with its 4-D weights in the chosen layout.

    ``auto`` is channels_last: on this project's CPUs (oneDNN) a training step of the
    CIFAR ResNets is 1.24-1.33x faster than in the default NCHW layout
    (benchmarks/train_throughput.py, RESULTS.md), and on CUDA it is the layout
    tensor-core convolutions want. On CPU, the layers that crash this torch in
    channels_last (strided 1x1 convolutions with few input channels, ``layout.py``) run
    in NCHW inside the channels_last model, under ``auto`` and ``channels_last`` alike;
    an explicit ``channels_last`` says so on the ``edgedistill.train`` log.
    """
    fmt_ = memory_format(fmt)
    module = module.to(device=device, memory_format=fmt_)
    if fmt_ is torch.channels_last and device.type == "cpu":
        paths = run_in_nchw(module)
        if paths and fmt == "channels_last":
            log.warning("train.memory_format=channels_last: %d layer(s) run in NCHW (strided "
                        "1x1 convolutions with < %d input channels per group, which crash "
                        "in channels_last on CPU with torch %s): %s", len(paths),
                        NCHW_BELOW_IN_CHANNELS, torch.__version__, ", ".join(paths))
    return module
