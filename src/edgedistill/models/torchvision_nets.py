"""torchvision ResNet-18/34/50 and DenseNet-121, built from scratch (never pretrained).

The stem takes any number of input channels. ``small_input=True`` swaps the 7x7
stride-2 stem and its max-pool for a 3x3 stride-1 convolution, the usual way to run
these networks on 28/32 px images. ResNets take ``blocks`` (blocks per stage) so
shallower students of the same block type can be derived.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from edgedistill.errors import UsageError
from edgedistill.models.zoo import Family, check_blocks, register_model, resolved_options

_DEFAULT_BLOCKS = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3], "resnet50": [3, 4, 6, 3]}
# Standard names per block type, by blocks per stage (timm's names for the smaller ones).
# Bottleneck [1, 1, 1, 1] (timm's resnet14) is left out: CIFAR resnet14 has that name.
_STANDARD = {
    "basic": {(1, 1, 1, 1): "resnet10", (2, 2, 2, 2): "resnet18", (3, 4, 6, 3): "resnet34"},
    "bottleneck": {(2, 2, 2, 2): "resnet26", (3, 4, 6, 3): "resnet50"},
}
# depth = (convs per block) * (blocks) + stem + classifier
_CONVS = {"basic": 2, "bottleneck": 3}


def _stem(in_channels: int, out_channels: int, small_input: bool) -> nn.Conv2d:
    conv = (nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False) if small_input
            else nn.Conv2d(in_channels, out_channels, 7, 2, 3, bias=False))
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _check_flag(small_input: object) -> bool:
    if not isinstance(small_input, bool):
        raise UsageError(f"model option small_input must be true or false, got {small_input!r}")
    return small_input


def _kind(name: str) -> str:
    return "bottleneck" if name == "resnet50" else "basic"


class TorchvisionResNetFamily(Family):
    """Shallower students pick a standard depth of the same block type; width is fixed."""

    name = "torchvision_resnet"
    can_change_depth = True

    def _blocks(self, spec: dict) -> tuple[int, ...]:
        return tuple(resolved_options(spec)["blocks"] or _DEFAULT_BLOCKS[spec["name"]])

    def display_name(self, spec: dict) -> str:
        blocks = self._blocks(spec)
        standard = _STANDARD[_kind(spec["name"])].get(blocks)
        return standard or f"{spec['name']}-b{'_'.join(map(str, blocks))}"

    def depths(self, spec: dict) -> tuple[int, ...]:
        convs = _CONVS[_kind(spec["name"])]
        return tuple(sorted(convs * sum(b) + 2 for b in _STANDARD[_kind(spec["name"])]))

    def depth(self, spec: dict) -> int:
        return _CONVS[_kind(spec["name"])] * sum(self._blocks(spec)) + 2

    def with_depth(self, spec: dict, depth: int) -> dict:
        kind = _kind(spec["name"])
        by_depth = {_CONVS[kind] * sum(b) + 2: b for b in _STANDARD[kind]}
        if depth not in by_depth:
            raise UsageError(
                f"a {kind}-block torchvision ResNet has standard depths "
                f"{', '.join(map(str, sorted(by_depth)))}; got {depth} (set blocks for others)"
            )
        blocks = by_depth[depth]
        out = {k: v for k, v in spec.items() if k != "blocks"}
        if _STANDARD[kind][blocks] in _DEFAULT_BLOCKS:
            return {**out, "name": _STANDARD[kind][blocks]}
        return {**out, "blocks": list(blocks)}


RESNETS = TorchvisionResNetFamily()


def _resnet(name: str):
    def build(num_classes: int = 10, in_channels: int = 1, blocks: list[int] | None = None,
              small_input: bool = False) -> nn.Module:
        # torchvision is imported on first use: importing the zoo stays fast
        from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

        block = Bottleneck if _kind(name) == "bottleneck" else BasicBlock
        per_stage = _DEFAULT_BLOCKS[name] if blocks is None else check_blocks(blocks, 4)
        model = ResNet(block, per_stage, num_classes=num_classes)
        model.conv1 = _stem(in_channels, 64, _check_flag(small_input))
        if small_input:
            model.maxpool = nn.Identity()
        model.stage_names = ["layer1", "layer2", "layer3", "layer4"]
        model.embedding_name = "avgpool"
        model.input_size = 32 if small_input else 224
        return model

    return build


for _name in _DEFAULT_BLOCKS:
    register_model(_name, RESNETS, f"torchvision {_name} (He et al. 2016), ImageNet layout")(
        _resnet(_name)
    )


@functools.cache
def hookable_densenet_class() -> type[nn.Module]:
    """Built on first use, so importing the zoo does not import torchvision."""
    from torchvision.models import DenseNet

    class HookableDenseNet(DenseNet):
        """DenseNet whose final ReLU and pooling are modules, so the embedding can be hooked."""

        def __init__(self, num_classes: int, in_channels: int, small_input: bool):
            super().__init__(32, (6, 12, 24, 16), 64, num_classes=num_classes)
            self.features.conv0 = _stem(in_channels, 64, _check_flag(small_input))
            if small_input:
                self.features.pool0 = nn.Identity()
            self.relu = nn.ReLU()
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.stage_names = [f"features.denseblock{i}" for i in range(1, 5)]
            self.embedding_name = "avgpool"
            self.input_size = 32 if small_input else 224

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(torch.flatten(self.avgpool(self.relu(self.features(x))), 1))

    return HookableDenseNet


class DenseNetFamily(Family):
    """No derivations: DenseNet students are chosen by name, not derived."""

    name = "densenet"


@register_model("densenet121", DenseNetFamily())
def densenet121(num_classes: int = 10, in_channels: int = 1, small_input: bool = False) -> nn.Module:
    """torchvision DenseNet-121 (Huang et al. 2017), ImageNet layout."""
    return hookable_densenet_class()(num_classes, in_channels, small_input)
