"""Size and compute of a model: the numbers a device budget is checked against.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts the
convolutions and matrix multiplies (a multiply-add is 2 FLOPs) and ignores cheap
element-wise ops (BatchNorm, activations, pooling, additions), as the literature
does. MACs = FLOPs / 2 is the figure most CNN papers quote.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgedistill.errors import UsageError

BYTES_PER_PARAM = {"fp32": 4, "fp16": 2, "int8": 1}


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared ones counted once)."""
    return sum(p.numel() for p in model.parameters())


def model_bytes(model: nn.Module, precision: str = "fp32") -> int:
    """Storage of the parameters at ``precision``: parameters x bytes per element.

    Buffers (BatchNorm statistics) are left out because deployment folds them into
    the preceding convolution; format overhead and quantization scales are left out too.
    """
    if precision not in BYTES_PER_PARAM:
        raise UsageError(
            f"unknown precision {precision!r}; choose one of: {', '.join(BYTES_PER_PARAM)}"
        )
    return count_params(model) * BYTES_PER_PARAM[precision]


def _input(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    shape = tuple(input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or any(not isinstance(s, int) or s < 1 for s in shape):
        raise UsageError(f"input_shape must be (C, H, W) or (N, C, H, W), got {input_shape!r}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return torch.zeros(shape, device=device)


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward in eval mode; ``(C, H, W)`` means a batch of one image."""
    x = _input(model, input_shape)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def summarize(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """Parameters, storage at each precision, FLOPs and MACs in one dict (for reports)."""
    flops = count_flops(model, input_shape)
    return {
        "params": count_params(model),
        **{f"bytes_{p}": model_bytes(model, p) for p in BYTES_PER_PARAM},
        "flops": flops,
        "macs": flops // 2,
    }
