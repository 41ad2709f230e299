"""``BottleneckHead``: the small head that replaces the teacher's first layers.

An encoder (stride-2 conv blocks) squeezes the input into a ``channels``-deep map,
the bottleneck that is quantized and sent over the network; a decoder (nearest
upsampling + conv blocks) turns it back into exactly the tensor shape the teacher's
tail expects. The device runs ``encoder``, the edge server runs ``decoder`` + tail,
so the encoder is kept cheap and the decoder carries the rest of the capacity.

Design choices (all recorded in the config and in ``spec``): the encoder downsamples
as far as the teacher's head does, plus ``extra_downsample`` halvings (fewer bytes
per channel); the bottleneck is conv-BN-ReLU, so its values are non-negative with
many exact zeros, which suits an affine uint8 code and lossless compression; the
decoder's last conv is linear, as the head output it imitates need not be.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgedistill.errors import UsageError


def _block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def _check_shape(name: str, shape) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise UsageError(f"BottleneckHead {name} must be a feature map (C, H, W), got {shape}; "
                         "split the teacher at a convolutional layer, before pooling")
    return shape


class BottleneckHead(nn.Module):
    """Encoder to ``channels`` x h x w, decoder back to ``out_shape`` (the tail's input)."""

    def __init__(self, in_shape, out_shape, channels: int, width: int = 64,
                 extra_downsample: int = 0, encoder_layers: int = 0, decoder_layers: int = 1):
        super().__init__()
        cin, hin, win = _check_shape("input", in_shape)
        cout, hout, wout = _check_shape("output (the tail's input)", out_shape)
        for key, value, low in (("channels", channels, 1), ("width", width, 1),
                                ("extra_downsample", extra_downsample, 0),
                                ("encoder_layers", encoder_layers, 0),
                                ("decoder_layers", decoder_layers, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UsageError(f"bottleneck.{key} must be an integer >= {low}, got {value!r}")
        downs = max(0, round(math.log2(max(hin / hout, 1)))) + extra_downsample
        size = (hin, win)
        layers: list[nn.Module] = []
        for i in range(max(downs, 1)):
            stride = 2 if i < downs else 1
            layers += _block(cin if i == 0 else width, width, stride)
            size = tuple(-(-s // stride) for s in size)
        if downs and 2 ** (downs - 1) >= max(hin, win):
            raise UsageError(f"bottleneck.extra_downsample={extra_downsample} shrinks a "
                             f"{hin}x{win} input below 1 pixel")
        for _ in range(encoder_layers):
            layers += _block(width, width)
        layers += _block(width, channels)
        self.encoder = nn.Sequential(*layers)
        layers = _block(channels, width)
        while size != (hout, wout):
            size = (min(2 * size[0], hout) if size[0] < hout else hout,
                    min(2 * size[1], wout) if size[1] < wout else wout)
            layers += [nn.Upsample(size=size, mode="nearest"), *_block(width, width)]
        for _ in range(decoder_layers):
            layers += _block(width, width)
        layers.append(nn.Conv2d(width, cout, 3, 1, 1))
        self.decoder = nn.Sequential(*layers)
        self.spec = {"in_shape": [cin, hin, win], "out_shape": [cout, hout, wout],
                     "channels": channels, "width": width, "extra_downsample": extra_downsample,
                     "encoder_layers": encoder_layers, "decoder_layers": decoder_layers}
        with torch.no_grad():
            self.bottleneck_shape = tuple(self.encoder.eval()(torch.zeros(1, cin, hin, win))
                                          .shape[1:])
        self.encoder.train()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
