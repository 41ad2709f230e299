"""``torchvision:NAME`` and ``timm:NAME``: published architectures, built as their
libraries build them (same module names, so their weights files load as they are).

ResNets, MobileNetV2 and DenseNets are built here from torchvision's classes with the
options a student derivation changes: ``blocks`` (blocks per stage) for all three,
``width_mult`` for MobileNetV2, ``growth_rate`` for DenseNet. Any other torchvision or
timm name is built by its library (``get_model`` / ``timm.create_model``) and supports
no derivation. ``in_channels`` other than 3 replaces the stem convolution.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from edgedistill.errors import UsageError
from edgedistill.models.zoo import Family, check_blocks, check_width, width_suffix

RESNET_BLOCKS = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3], "resnet50": [3, 4, 6, 3],
                 "resnet101": [3, 4, 23, 3], "resnet152": [3, 8, 36, 3]}
# standard blocks per stage by block type, the depths a shallower ResNet student takes
_RESNET_STANDARD = {"basic": ([1, 1, 1, 1], [2, 2, 2, 2], [3, 4, 6, 3]),
                    "bottleneck": ([2, 2, 2, 2], [3, 4, 6, 3], [3, 4, 23, 3], [3, 8, 36, 3])}
_CONVS = {"basic": 2, "bottleneck": 3}
DENSENETS = {"densenet121": (32, [6, 12, 24, 16], 64), "densenet161": (48, [6, 12, 36, 24], 96),
             "densenet169": (32, [6, 12, 32, 32], 64), "densenet201": (32, [6, 12, 48, 32], 64)}
# torchvision's MobileNetV2 table: t (expansion), c (channels), n (blocks), s (stride)
MOBILENET_V2 = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]


def _kind(arch: str) -> str:
    return "basic" if arch in ("resnet18", "resnet34") else "bottleneck"


def scale_blocks(blocks: list[int], total: int) -> list[int]:
    """``blocks`` rescaled to sum to ``total`` (at least one per stage), proportions kept."""
    if total < len(blocks):
        raise UsageError(f"{len(blocks)} stages need at least {len(blocks)} blocks, got {total}")
    out = [max(1, round(b * total / sum(blocks))) for b in blocks]
    while sum(out) != total:
        step = 1 if sum(out) < total else -1
        order = sorted(range(len(out)), key=lambda i: (-out[i], -i))
        i = next(i for i in order if out[i] + step >= 1)
        out[i] += step
    return out


class _HubFamily(Family):
    """Names and options of one torchvision family; ``spec['name']`` is ``torchvision:ARCH``."""

    def arch(self, spec: dict) -> str:
        return spec["name"].split(":", 1)[1]

    def blocks(self, spec: dict) -> list[int]:
        return list(spec.get("blocks") or self.default_blocks(self.arch(spec)))

    def default_blocks(self, arch: str) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def display_name(self, spec: dict) -> str:
        blocks = self.blocks(spec)
        name = spec["name"]
        if blocks != self.default_blocks(self.arch(spec)):
            name += "-b" + "_".join(map(str, blocks))
        width = spec.get(self.width_key) if self.width_key else None
        return name + (width_suffix(width) if isinstance(width, (int, float)) else "")

    def with_blocks(self, spec: dict, blocks: list[int]) -> dict:
        out = {k: v for k, v in spec.items() if k != "blocks"}
        return out if blocks == self.default_blocks(self.arch(spec)) else {**out, "blocks": blocks}


class ResNetFamily(_HubFamily):
    """Shallower students take a standard depth of the same block type; narrower ones
    scale every stage's channels by ``width`` (64, 128, 256, 512 at width 1), built from
    torchvision's own blocks, so the state-dict keys stay torchvision's."""

    name = "torchvision:resnet"
    can_change_depth = True
    width_key = "width"
    options = {"blocks": None, "width": 1.0}

    def default_blocks(self, arch: str) -> list[int]:
        return RESNET_BLOCKS[arch]

    def depths(self, spec: dict) -> tuple[int, ...]:
        kind = _kind(self.arch(spec))
        return tuple(_CONVS[kind] * sum(b) + 2 for b in _RESNET_STANDARD[kind])

    def depth(self, spec: dict) -> int:
        return _CONVS[_kind(self.arch(spec))] * sum(self.blocks(spec)) + 2

    def with_depth(self, spec: dict, depth: int) -> dict:
        kind = _kind(self.arch(spec))
        by_depth = {_CONVS[kind] * sum(b) + 2: b for b in _RESNET_STANDARD[kind]}
        if depth not in by_depth:
            raise UsageError(f"a {kind}-block torchvision ResNet has standard depths "
                             f"{', '.join(map(str, sorted(by_depth)))}; got {depth}")
        return self.with_blocks(spec, list(by_depth[depth]))

    def build(self, arch: str, num_classes: int, options: dict) -> nn.Module:
        from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

        blocks = check_blocks(options.pop("blocks", None) or RESNET_BLOCKS[arch], 4)
        width = check_width(options.pop("width", 1.0))
        block = BasicBlock if _kind(arch) == "basic" else Bottleneck
        model = ResNet(block, blocks, num_classes=num_classes, **options)
        if width != 1:
            narrow_resnet(model, block, blocks, max(1, round(64 * width)), num_classes)
        model.stage_names = ["layer1", "layer2", "layer3", "layer4"]
        model.embedding_name = "avgpool"
        return model


def narrow_resnet(model: nn.Module, block, blocks: list[int], base: int,
                  num_classes: int) -> None:
    """Rebuild ``model``'s stem, stages and classifier with ``base`` channels in the first
    stage (doubling per stage) through torchvision's own ``_make_layer``, initialised as
    torchvision initialises a ResNet."""
    model.inplanes = base
    model.conv1 = nn.Conv2d(model.conv1.in_channels, base, 7, 2, 3, bias=False)
    model.bn1 = model._norm_layer(base)
    for i, n in enumerate(blocks):
        setattr(model, f"layer{i + 1}",
                model._make_layer(block, base * 2 ** i, n, stride=1 if i == 0 else 2))
    model.fc = nn.Linear(base * 8 * block.expansion, num_classes)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _ProportionalDepth(_HubFamily):
    """Depth is the number of blocks (or layers); a shallower student keeps each stage's
    share of them, at least one per stage."""

    can_change_depth = True

    def depths(self, spec: dict) -> tuple[int, ...]:
        blocks = self.blocks(spec)
        return tuple(self._depth(n) for n in range(len(blocks), sum(blocks) + 1))

    def depth(self, spec: dict) -> int:
        return self._depth(sum(self.blocks(spec)))

    def with_depth(self, spec: dict, depth: int) -> dict:
        total = self._total(depth)
        if total is None or total < len(self.blocks(spec)):
            raise UsageError(f"{spec['name']} cannot have depth {depth}; its depths are "
                             f"{', '.join(map(str, self.depths(spec)))}")
        return self.with_blocks(spec, scale_blocks(self.blocks(spec), total))

    def _depth(self, total: int) -> int:
        return total

    def _total(self, depth: int) -> int | None:
        return depth


class MobileNetV2Family(_ProportionalDepth):
    """Narrower: ``width_mult``; shallower: fewer inverted-residual blocks per stage."""

    name = "torchvision:mobilenet_v2"
    width_key = "width_mult"
    options = {"blocks": None, "width_mult": 1.0}

    def default_blocks(self, arch: str) -> list[int]:
        return [row[2] for row in MOBILENET_V2]

    def build(self, arch: str, num_classes: int, options: dict) -> nn.Module:
        from torchvision.models import MobileNetV2

        blocks = check_blocks(options.pop("blocks", None) or self.default_blocks(arch), 7)
        setting = [[t, c, n, s] for (t, c, _, s), n in zip(MOBILENET_V2, blocks, strict=True)]
        width = check_width(options.pop("width_mult", 1.0), "width_mult")
        model = MobileNetV2(num_classes=num_classes, width_mult=width,
                            inverted_residual_setting=setting, **options)
        ends, index = [], 0
        for i, n in enumerate(blocks):
            index += n
            if i + 1 == len(blocks) or setting[i + 1][3] == 2:
                ends.append(f"features.{index}")
        model.stage_names = [*ends[:-1], f"features.{len(model.features) - 1}"]
        return model


class DenseNetFamily(_ProportionalDepth):
    """Narrower: ``growth_rate`` (and the stem's width) scaled; shallower: fewer dense
    layers per block. Depth counts convolutions as in the paper: 2 per layer + 5."""

    name = "torchvision:densenet"
    width_key = "growth_rate"
    options = {"blocks": None, "growth_rate": None, "num_init_features": None}

    def default_blocks(self, arch: str) -> list[int]:
        return DENSENETS[arch][1]

    def _depth(self, total: int) -> int:
        return 2 * total + 5

    def _total(self, depth: int) -> int | None:
        return (depth - 5) // 2 if depth > 5 and depth % 2 else None

    def narrow(self, spec: dict, width: float) -> dict:
        growth, _, stem = DENSENETS[self.arch(spec)]
        growth = spec.get("growth_rate") or growth
        stem = spec.get("num_init_features") or stem
        return {**spec, "growth_rate": max(1, round(growth * width)),
                "num_init_features": max(1, round(stem * width))}

    def display_name(self, spec: dict) -> str:
        name = super().display_name({k: v for k, v in spec.items() if k != "growth_rate"})
        growth = spec.get("growth_rate")
        return name + (f"-k{growth}" if growth else "")

    def build(self, arch: str, num_classes: int, options: dict) -> nn.Module:
        from torchvision.models import DenseNet

        growth, blocks, stem = DENSENETS[arch]
        blocks = check_blocks(options.pop("blocks", None) or blocks, 4)
        model = DenseNet(options.pop("growth_rate", None) or growth, tuple(blocks),
                         options.pop("num_init_features", None) or stem,
                         num_classes=num_classes, **options)
        model.stage_names = [f"features.denseblock{i}" for i in range(1, 5)]
        return model


class LibraryFamily(Family):
    """Any other torchvision or timm network, built by its own library; no derivation."""

    name = "torchvision/timm"
    options: dict[str, Any] = {}


RESNET, MOBILENET, DENSENET, OTHER = (ResNetFamily(), MobileNetV2Family(), DenseNetFamily(),
                                      LibraryFamily())


def family(name: str) -> Family:
    library, arch = name.split(":", 1)
    if library != "torchvision":
        return OTHER
    if arch in RESNET_BLOCKS:
        return RESNET
    if arch == "mobilenet_v2":
        return MOBILENET
    return DENSENET if arch in DENSENETS else OTHER


def _replace_stem(model: nn.Module, in_channels: int, name: str) -> None:
    """Swap the first convolution for one that takes ``in_channels`` (same shape otherwise)."""
    for path, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            parent = model.get_submodule(path.rpartition(".")[0]) if "." in path else model
            conv = nn.Conv2d(in_channels, module.out_channels, module.kernel_size,
                             module.stride, module.padding, bias=module.bias is not None)
            setattr(parent, path.rpartition(".")[2], conv)
            return
    raise UsageError(f"{name} has no convolution to take {in_channels}-channel images")


def build(name: str, num_classes: int, in_channels: int, options: dict) -> nn.Module:
    """A fresh (untrained) network for ``torchvision:ARCH`` or ``timm:ARCH``."""
    library, arch = name.split(":", 1)
    options = dict(options)
    if library == "timm":
        try:
            import timm
        except ImportError:
            raise UsageError(f"{name} needs timm: pip install 'edgedistill[timm]'") from None
        if arch not in timm.list_models():
            raise UsageError(f"timm has no model {arch!r}; see timm.list_models()")
        return timm.create_model(arch, pretrained=False, num_classes=num_classes,
                                 in_chans=in_channels, **options)
    fam = family(name)
    if fam is OTHER:
        import torchvision

        if arch not in torchvision.models.list_models():
            raise UsageError(f"torchvision has no model {arch!r}; choose one of "
                             "torchvision.models.list_models()")
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes,
                                             **options)
    else:
        model = fam.build(arch, num_classes, options)
    if in_channels != 3:
        _replace_stem(model, in_channels, name)
    return model
