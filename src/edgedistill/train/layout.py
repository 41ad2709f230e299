"""Per-layer NCHW fallback for the convolutions that corrupt the heap in channels_last.

torch 2.14.1 on CPU (oneDNN) corrupts the heap in the backward pass of a 1x1
convolution with stride > 1 and fewer than 16 input channels per group when its input
and weight are channels_last: the process dies by SIGSEGV or SIGABRT (``double free or
corruption``), and where it survives the heap may already be damaged. Whether it dies
depends on the batch's spatial size (even sizes from 56 px on) and varies between
processes, so no probe can show a shape safe; ``benchmarks/layout_safety.py`` maps it.

The rule here is therefore read from the layer's own attributes only: a strided 1x1
``Conv2d`` with fewer than ``NCHW_BELOW_IN_CHANNELS`` input channels per group runs in
NCHW (input made contiguous, weight kept NCHW, output handed back in channels_last),
whatever size of image reaches it, while the rest of the model stays channels_last.
The bound is twice the largest count seen to crash (15), for margin.
"""

from __future__ import annotations

import torch
from torch import nn

NCHW_BELOW_IN_CHANNELS = 32


def is_hazardous(module: nn.Module) -> bool:
    """A strided 1x1 convolution with few input channels per group (see the module doc)."""
    return (isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == (1, 1)
            and max(module.stride) > 1
            and module.in_channels // module.groups < NCHW_BELOW_IN_CHANNELS)


def hazardous_layers(model: nn.Module) -> list[str]:
    """Module paths of the layers that must not run in channels_last on CPU."""
    return [path for path, m in model.named_modules() if is_hazardous(m)]


def is_nchw(t: torch.Tensor) -> bool:
    """Strides exactly NCHW. ``is_contiguous()`` is not enough: a tensor with one channel,
    or a 1x1 kernel, passes it with channels_last strides, and oneDNN then takes the
    channels_last path."""
    strides, step = [], 1
    for n in reversed(t.shape):
        strides.insert(0, step)
        step *= max(n, 1)
    return t.stride() == tuple(strides)


def _nchw_inputs(conv: nn.Conv2d, args: tuple) -> tuple:
    if not is_nchw(conv.weight):  # re-laid after run_in_nchw, e.g. by a second .to()
        conv.to(memory_format=torch.contiguous_format)
    x = args[0]
    return (x if is_nchw(x) else x.clone(memory_format=torch.contiguous_format), *args[1:])


def _channels_last_output(conv: nn.Conv2d, args: tuple, out: torch.Tensor) -> torch.Tensor:
    return out.contiguous(memory_format=torch.channels_last) if out.dim() == 4 else out


def run_in_nchw(model: nn.Module) -> list[str]:
    """Make every hazardous layer of ``model`` compute in NCHW inside a channels_last
    model; returns their paths. Idempotent: a layer already handled is left alone."""
    paths = []
    for path, m in model.named_modules():
        if not is_hazardous(m):
            continue
        paths.append(path)
        m.to(memory_format=torch.contiguous_format)
        if not getattr(m, "_edgedistill_nchw", False):
            m.register_forward_pre_hook(_nchw_inputs)
            m.register_forward_hook(_channels_last_output)
            m._edgedistill_nchw = True
    return paths
