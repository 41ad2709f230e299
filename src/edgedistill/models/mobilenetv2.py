"""MobileNetV2 (Sandler et al. 2018) for small inputs: the usual edge-device student.

torchvision's network with two strides removed (the stem and the 24-channel stage
run at stride 1), as in CRD's CIFAR MobileNetV2: the overall stride is 8 instead
of 32, so a 28 or 32 px image still ends in a 4x4 map rather than 1x1.
``mobilenetv2_tiny`` is width 0.35, the smallest multiplier of the paper's table;
like the paper, widths below 1 keep the last 1x1 convolution at 1280 channels.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from edgedistill.models.zoo import Family, check_width, register_model, resolved_options

TINY_WIDTH = 0.35
# t (expansion), c (channels), n (blocks), s (stride of the first block)
_SETTING = [
    [1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2],
    [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1],
]


@functools.cache
def small_input_class() -> type[nn.Module]:
    """The class, built on first use so that importing the zoo does not import
    torchvision (seconds of start-up for every process, Ray replicas included)."""
    from torchvision.models import MobileNetV2

    class SmallInputMobileNetV2(MobileNetV2):
        """torchvision MobileNetV2 with a stride-1 stem and a pooling module hooks can reach."""

        def __init__(self, num_classes: int, in_channels: int, width_mult: float):
            super().__init__(num_classes=num_classes, width_mult=width_mult,
                             inverted_residual_setting=_SETTING)
            stem = self.features[0][0]
            self.features[0][0] = nn.Conv2d(in_channels, stem.out_channels, 3, 1, 1, bias=False)
            nn.init.kaiming_normal_(self.features[0][0].weight, mode="fan_out")
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            # last block of each resolution (32, 16, 8 px at a 32 px input), then the 1x1 head
            self.stage_names = ["features.3", "features.6", "features.13", "features.18"]
            self.embedding_name = "avgpool"
            self.input_size = 32

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return SmallInputMobileNetV2


class MobileNetV2Family(Family):
    """Narrower students scale ``width_mult``; depth is fixed by the block table."""

    name = "mobilenetv2"
    width_key = "width_mult"

    def display_name(self, spec: dict) -> str:
        width = resolved_options(spec)["width_mult"]
        if width == 1:
            return "mobilenetv2"
        return "mobilenetv2_tiny" if width == TINY_WIDTH else f"mobilenetv2-w{width:g}"


FAMILY = MobileNetV2Family()


@register_model("mobilenetv2", FAMILY)
def mobilenetv2(num_classes: int = 10, in_channels: int = 1, width_mult: float = 1.0) -> nn.Module:
    """MobileNetV2 (Sandler et al. 2018) for 28/32 px inputs, overall stride 8."""
    return small_input_class()(num_classes, in_channels, check_width(width_mult, "width_mult"))


@register_model("mobilenetv2_tiny", FAMILY)
def mobilenetv2_tiny(num_classes: int = 10, in_channels: int = 1,
                     width_mult: float = TINY_WIDTH) -> nn.Module:
    """MobileNetV2 at width 0.35 for 28/32 px inputs."""
    return small_input_class()(num_classes, in_channels, check_width(width_mult, "width_mult"))
