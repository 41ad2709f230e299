"""8-bit affine quantization: every value in range comes back within half a step,
zero is exact, and the receiver needs only what the wire carries."""

from __future__ import annotations

import numpy as np
import pytest

from edgedistill.errors import UsageError
from edgedistill.split.quantize import dequantize, error_bound, quantize

RNG = np.random.default_rng(0)
TENSORS = {
    "normal": RNG.standard_normal((4, 8, 5, 5)).astype(np.float32),
    "relu": np.maximum(RNG.standard_normal((2, 3, 7, 7)), 0).astype(np.float32) * 40,
    "negative": -np.abs(RNG.standard_normal((1, 4, 3, 3))).astype(np.float32),
    "large": (RNG.standard_normal((1, 2, 4, 4)) * 1e6).astype(np.float32),
    "tiny": (RNG.standard_normal((1, 2, 4, 4)) * 1e-6).astype(np.float32),
    "zeros": np.zeros((1, 3, 2, 2), np.float32),
    "constant": np.full((1, 2, 3, 3), 2.5, np.float32),
}


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("name", list(TENSORS))
def test_round_trip_within_half_a_step(name, per_channel):
    x = TENSORS[name]
    q = quantize(x, per_channel)
    assert q.data.dtype == np.uint8 and q.data.shape == x.shape
    assert q.scale.dtype == np.float32 and q.zero_point.dtype == np.uint8
    assert q.scale.shape == ((x.shape[1],) if per_channel else (1,))
    err = np.abs(dequantize(q).astype(np.float64) - x)
    bound = error_bound(q) * (1 + 1e-6) + 1e-6 * np.abs(x)
    assert np.all(err <= bound), float((err - bound).max())


def test_per_channel_is_tighter_for_channels_of_different_ranges():
    x = TENSORS["normal"] * np.array([1, 100, 1, 1, 1, 1, 1, 1], np.float32).reshape(1, -1, 1, 1)
    small = [0, 2, 3, 4, 5, 6, 7]
    per_tensor = np.abs(dequantize(quantize(x)) - x)[:, small].mean()
    per_channel = np.abs(dequantize(quantize(x, True)) - x)[:, small].mean()
    assert per_channel < per_tensor / 10


def test_zero_is_exact_and_codes_span_the_range():
    x = np.array([[-1.0, 0.0, 0.25, 3.0]], np.float32)
    q = quantize(x)
    back = dequantize(q)
    assert back[0, 1] == 0.0
    assert q.data.min() == 0 and q.data.max() == 255


def test_step_size_matches_the_range():
    x = np.linspace(0, 255, 256, dtype=np.float32)[None]
    q = quantize(x)
    assert q.scale[0] == pytest.approx(1.0) and q.zero_point[0] == 0
    assert np.array_equal(q.data[0], np.arange(256))


@pytest.mark.parametrize("bad,msg", [
    (np.array([1.0, np.nan], np.float32), "NaN"),
    (np.array([1.0, np.inf], np.float32), "NaN or infinite"),
    (np.zeros((0,), np.float32), "empty"),
])
def test_refuses_what_cannot_be_quantized(bad, msg):
    with pytest.raises(UsageError, match=msg):
        quantize(bad)


def test_per_channel_axis_checked():
    with pytest.raises(UsageError, match="out of range"):
        quantize(np.zeros(4, np.float32), per_channel=True, axis=1)
