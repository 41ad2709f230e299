"""Wide ResNets WRN-d-k (Zagoruyko & Komodakis 2016), the CIFAR teachers of CRD and mdistiller.

Pre-activation blocks in three stages of 16k/32k/64k channels, depth = 6n + 4.
Beyond the paper's widening factor ``widen`` (an integer), ``width`` scales every
layer, so narrower students can be derived the same way as for the other families.
"""

from __future__ import annotations

import torch
from torch import nn

from edgedistill.errors import UsageError
from edgedistill.models.zoo import (
    Family,
    check_width,
    register_model,
    resolved_options,
    scale_channels,
    width_suffix,
)

NAMES = ("wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2", "wrn_28_10")
DEPTHS = (10, 16, 22, 28, 40)


class WideBlock(nn.Module):
    """BN-ReLU-conv twice; where the shape changes, a 1x1 conv of the activated input."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu1(self.bn1(x))
        out = self.conv2(self.dropout(self.relu2(self.bn2(self.conv1(pre)))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    """Stem, ``layer1..layer3``, final BN-ReLU (``bn1``, ``relu``), pooling, classifier."""

    def __init__(self, depth: int, widen: int, width: float, dropout: float,
                 num_classes: int, in_channels: int):
        super().__init__()
        n = (depth - 4) // 6
        stem = scale_channels(16, width)
        self.conv1 = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        in_planes = stem
        for i, base in enumerate((16, 32, 64)):
            planes = scale_channels(base * widen, width)
            blocks = []
            for j in range(n):
                blocks.append(WideBlock(in_planes, planes, 2 if i and not j else 1, dropout))
                in_planes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.stage_names = ["layer1", "layer2", "layer3"]
        self.embedding_name = "avgpool"
        self.input_size = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = self.avgpool(self.relu(self.bn1(x)))
        return self.fc(torch.flatten(x, 1))


def _check_depth(depth: object) -> int:
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 10 or (depth - 4) % 6:
        raise UsageError(f"WRN depth must be 6n + 4 (10, 16, 22, 28, 40, ...), got {depth!r}")
    return depth


class WideResNetFamily(Family):
    """Shallower students change ``depth``, narrower ones the ``width`` multiplier."""

    name = "wrn"
    width_key = "width"
    can_change_depth = True

    def display_name(self, spec: dict) -> str:
        o = resolved_options(spec)
        return f"wrn_{o['depth']}_{o['widen']}" + width_suffix(o["width"])

    def depths(self, spec: dict) -> tuple[int, ...]:
        return DEPTHS

    def depth(self, spec: dict) -> int:
        return resolved_options(spec)["depth"]

    def with_depth(self, spec: dict, depth: int) -> dict:
        _check_depth(depth)
        standard = f"wrn_{depth}_{resolved_options(spec)['widen']}"
        out = {k: v for k, v in spec.items() if k not in ("depth", "widen")}
        if standard in NAMES:
            return {**out, "name": standard}
        return {**spec, "depth": depth}


FAMILY = WideResNetFamily()


def _factory(default_depth: int, default_widen: int):
    def build(num_classes: int = 10, in_channels: int = 1, depth: int = default_depth,
              widen: int = default_widen, width: float = 1.0, dropout: float = 0.0) -> nn.Module:
        if not isinstance(widen, int) or isinstance(widen, bool) or widen < 1:
            raise UsageError(f"WRN widen must be a positive integer, got {widen!r}")
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise UsageError(f"WRN dropout must be in [0, 1), got {dropout!r}")
        return WideResNet(_check_depth(depth), widen, check_width(width), float(dropout),
                          num_classes, in_channels)

    return build


for _name in NAMES:
    _d, _k = (int(p) for p in _name.split("_")[1:])
    register_model(_name, FAMILY, f"Wide ResNet WRN-{_d}-{_k} (Zagoruyko & Komodakis 2016)")(
        _factory(_d, _k)
    )
