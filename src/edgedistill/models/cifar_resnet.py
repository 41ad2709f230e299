"""CIFAR-style ResNets (He et al. 2016, section 4.2), the usual teachers and students in KD papers.

Three stages of BasicBlocks on a 3x3 stem, depth = 6n + 2. Shortcuts that change
shape use a 1x1 convolution + BatchNorm (option B), as in the CRD and mdistiller
code, so parameter counts match the KD literature. ``resnet8x4`` and ``resnet32x4``
are CRD's 4x-wide variants (stem 32, stages 64/128/256).
"""

from __future__ import annotations

import torch
from torch import nn

from edgedistill.errors import UsageError
from edgedistill.models.zoo import (
    Family,
    check_blocks,
    check_width,
    register_model,
    resolved_options,
    scale_channels,
    width_suffix,
)

DEPTHS = (8, 14, 20, 32, 44, 56, 110)
WIDE_DEPTHS = (8, 32)
NAMES = sorted({f"resnet{d}" for d in DEPTHS} | {f"resnet{d}x4" for d in WIDE_DEPTHS})
_NARROW = (16, (16, 32, 64))
_WIDE = (32, (64, 128, 256))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut; ``relu`` is the block output, for hooks."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class CifarResNet(nn.Module):
    """Stem, three stages (``layer1..layer3``), global pooling, classifier."""

    def __init__(self, blocks: list[int], stem: int, widths: tuple[int, ...],
                 num_classes: int, in_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU()
        in_planes = stem
        for i, (n, planes) in enumerate(zip(blocks, widths, strict=True)):
            stride = 1 if i == 0 else 2
            layers = []
            for j in range(n):
                layers.append(BasicBlock(in_planes, planes, stride if j == 0 else 1))
                in_planes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.stage_names = ["layer1", "layer2", "layer3"]
        self.embedding_name = "avgpool"
        self.input_size = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _parse(name: str) -> tuple[int, bool]:
    """``resnet32x4`` -> (32, True): the standard depth and whether it is the 4x-wide variant."""
    wide = name.endswith("x4")
    return int(name[len("resnet"):len(name) - 2 * wide]), wide


class CifarResNetFamily(Family):
    """Depth = 6n + 2; shallower students change n, narrower ones the ``width`` multiplier."""

    name = "cifar_resnet"
    width_key = "width"
    can_change_depth = True

    def _blocks(self, spec: dict) -> list[int]:
        blocks = resolved_options(spec)["blocks"]
        return list(blocks) if blocks else [(_parse(spec["name"])[0] - 2) // 6] * 3

    def display_name(self, spec: dict) -> str:
        blocks = self._blocks(spec)
        wide = "x4" if _parse(spec["name"])[1] else ""
        if len(set(blocks)) == 1:
            base = f"resnet{6 * blocks[0] + 2}{wide}"
        else:
            base = f"{spec['name']}-b{'_'.join(map(str, blocks))}"
        return base + width_suffix(resolved_options(spec)["width"])

    def depths(self, spec: dict) -> tuple[int, ...]:
        return DEPTHS

    def depth(self, spec: dict) -> int:
        return 2 * sum(self._blocks(spec)) + 2

    def with_depth(self, spec: dict, depth: int) -> dict:
        if depth < 8 or (depth - 2) % 6:
            raise UsageError(f"CIFAR ResNet depth must be 6n + 2 (8, 14, 20, ...), got {depth}")
        out = {k: v for k, v in spec.items() if k != "blocks"}
        standard = f"resnet{depth}{'x4' if _parse(spec['name'])[1] else ''}"
        if standard in NAMES:
            out["name"] = standard
        else:
            out["blocks"] = [(depth - 2) // 6] * 3
        return out


FAMILY = CifarResNetFamily()


def _factory(name: str):
    depth, wide = _parse(name)
    stem, widths = _WIDE if wide else _NARROW

    def build(num_classes: int = 10, in_channels: int = 1, width: float = 1.0,
              blocks: list[int] | None = None) -> nn.Module:
        width = check_width(width)
        per_stage = check_blocks(blocks, 3) if blocks is not None else [(depth - 2) // 6] * 3
        return CifarResNet(
            per_stage, scale_channels(stem, width),
            tuple(scale_channels(c, width) for c in widths), num_classes, in_channels,
        )

    return build


for _name in NAMES:
    _depth, _wide = _parse(_name)
    _desc = (f"CIFAR ResNet-{_depth} x4 wide (CRD), stages 64/128/256" if _wide
             else f"CIFAR ResNet-{_depth} (He et al. 2016), stages 16/32/64")
    register_model(_name, FAMILY, _desc)(_factory(_name))
