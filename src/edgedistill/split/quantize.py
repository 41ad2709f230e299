"""8-bit affine quantization of the bottleneck, per tensor or per channel, in numpy.

The device side runs the head in ONNX Runtime and needs no torch, so this module
is numpy only. ``q = clip(round(x / scale) + zero_point, 0, 255)`` and
``x' = (q - zero_point) * scale``. The range always includes 0 (so zero padding and
ReLU zeros are exact), the scale is rounded to float32 *before* quantizing (so the
receiver, who only sees the float32 scale, reconstructs exactly what was meant), and
every value inside the range comes back within ``scale / 2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgedistill.errors import UsageError

LEVELS = 255


@dataclass(frozen=True)
class QTensor:
    """uint8 codes plus the parameters to undo them.

    ``axis`` is None for one scale/zero point for the whole tensor, else the axis
    that has one scale/zero point per index (the channel axis, 1 for NCHW).
    """

    data: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None = None

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def _broadcast(self, values: np.ndarray) -> np.ndarray:
        if self.axis is None:
            return values.reshape(())
        shape = [1] * self.data.ndim
        shape[self.axis] = -1
        return values.reshape(shape)


def _range_params(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo = np.minimum(lo.astype(np.float64), 0.0)
    hi = np.maximum(hi.astype(np.float64), 0.0)
    scale = ((hi - lo) / LEVELS).astype(np.float32)
    scale[scale == 0] = 1.0
    if not np.all(np.isfinite(scale)):
        raise UsageError("cannot quantize: the tensor's range overflows float32")
    zero_point = np.clip(np.rint(-lo / scale.astype(np.float64)), 0, LEVELS).astype(np.uint8)
    return scale, zero_point


def quantize(x: np.ndarray, per_channel: bool = False, axis: int = 1) -> QTensor:
    """Quantize ``x`` to uint8; ``per_channel`` gives each index of ``axis`` its own range."""
    x = np.asarray(x)
    if x.size == 0:
        raise UsageError("cannot quantize an empty tensor")
    if not np.all(np.isfinite(x)):
        raise UsageError("cannot quantize a tensor with NaN or infinite values")
    x64 = x.astype(np.float64)
    if per_channel:
        if not -x.ndim <= axis < x.ndim:
            raise UsageError(f"per-channel axis {axis} is out of range for shape {x.shape}")
        axis = axis % x.ndim
        reduce = tuple(i for i in range(x.ndim) if i != axis)
        scale, zp = _range_params(x64.min(axis=reduce), x64.max(axis=reduce))
    else:
        axis = None
        scale, zp = _range_params(np.array([x64.min()]), np.array([x64.max()]))
    q = QTensor(np.empty(x.shape, np.uint8), scale, zp, axis)
    codes = np.rint(x64 / q._broadcast(scale.astype(np.float64))) + q._broadcast(zp)
    np.clip(codes, 0, LEVELS, out=codes)
    return QTensor(codes.astype(np.uint8), scale, zp, axis)


def dequantize(q: QTensor) -> np.ndarray:
    """float32 values ``(q - zero_point) * scale``."""
    codes = q.data.astype(np.float32) - q._broadcast(q.zero_point.astype(np.float32))
    return codes * q._broadcast(q.scale)


def error_bound(q: QTensor) -> np.ndarray:
    """Largest round-trip error for a value inside the quantized range: half a step."""
    return q._broadcast(q.scale.astype(np.float64) / 2)
