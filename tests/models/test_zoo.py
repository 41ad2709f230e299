"""The zoo: every model builds, runs, rebuilds from its spec and names its variants.

Every model runs one real forward at batch 2 with one input channel (the project's
Fashion-MNIST default) at its natural size; ImageNet-layout models at 64 px to stay
fast. Three channels and 28 px inputs run on one model per family; the other
models' stems are checked on the meta device, which allocates nothing.
"""

import pytest
import torch
from torch import nn

from edgedistill.errors import UsageError
from edgedistill.models import MODELS, create_model, valid_paths

ALL = MODELS.names()
ONE_PER_FAMILY = [
    ("resnet8", {}), ("resnet8x4", {}), ("wrn_16_1", {}), ("mobilenetv2_tiny", {}),
    ("resnet18", {"small_input": True}), ("densenet121", {"small_input": True}),
]


def _side(model) -> int:
    return 64 if model.input_size == 224 else model.input_size


@pytest.mark.parametrize("name", ALL)
def test_forward_at_natural_size(name):
    model = create_model(name, num_classes=7, in_channels=1).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, _side(model), _side(model)))
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(("name", "kw"), ONE_PER_FAMILY)
def test_three_channels_at_28_and_32_px(name, kw):
    model = create_model(name, num_classes=5, in_channels=3, **kw).eval()
    with torch.no_grad():
        for side in (28, 32):
            assert model(torch.randn(2, 3, side, side)).shape == (2, 5)


@pytest.mark.parametrize("name", ALL)
def test_stem_channels_and_attributes(name):
    with torch.device("meta"):
        model = create_model(name, in_channels=3)
    stem = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert stem.in_channels == 3
    paths = set(valid_paths(model))
    assert set(model.stage_names) <= paths and len(model.stage_names) >= 3
    assert model.embedding_name in paths
    assert model.input_size in (32, 224)
    assert model.display_name == name


@pytest.mark.parametrize("spec", [
    {"name": "resnet56", "width": 0.5},
    {"name": "resnet20", "blocks": (1, 2, 3)},
    {"name": "wrn_40_2", "depth": 16, "dropout": 0.1},
    {"name": "mobilenetv2", "width_mult": 0.5},
    {"name": "resnet18", "blocks": [1, 1, 1, 1], "small_input": True},
])
def test_spec_round_trip(spec):
    model = create_model(**spec, num_classes=4, in_channels=3)
    assert model.spec["name"] == spec["name"]
    assert model.spec["num_classes"] == 4 and model.spec["in_channels"] == 3
    again = create_model(**model.spec)
    assert again.spec == model.spec
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in again.state_dict().items()}
    again.load_state_dict(model.state_dict())


@pytest.mark.parametrize(("spec", "display"), [
    ({"name": "resnet56", "width": 0.5}, "resnet56-w0.5"),
    ({"name": "resnet56", "blocks": [1, 1, 1]}, "resnet8"),
    ({"name": "resnet56", "blocks": [1, 2, 3]}, "resnet56-b1_2_3"),
    ({"name": "resnet32x4", "blocks": [1, 1, 1]}, "resnet8x4"),
    ({"name": "wrn_40_2", "depth": 16, "width": 0.25}, "wrn_16_2-w0.25"),
    ({"name": "mobilenetv2", "width_mult": 0.35}, "mobilenetv2_tiny"),
    ({"name": "mobilenetv2_tiny", "width_mult": 0.175}, "mobilenetv2-w0.175"),
    ({"name": "resnet34", "blocks": [2, 2, 2, 2]}, "resnet18"),
    ({"name": "resnet18", "blocks": [1, 1, 1, 1]}, "resnet10"),
    ({"name": "resnet50", "blocks": [1, 1, 1, 1]}, "resnet50-b1_1_1_1"),
])
def test_display_names(spec, display):
    with torch.device("meta"):
        assert create_model(**spec).display_name == display


def test_width_and_blocks_change_the_network():
    with torch.device("meta"):
        half = create_model("resnet20", width=0.5)
        deep = create_model("resnet20", blocks=[1, 1, 4])
    assert half.conv1.out_channels == 8 and half.fc.in_features == 32
    assert len(deep.layer1) == 1 and len(deep.layer3) == 4


def test_small_input_stem_keeps_resolution():
    model = create_model("resnet18", small_input=True).eval()
    assert model.input_size == 32
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_unknown_name_lists_models():
    with pytest.raises(UsageError, match="resnet20.*wrn_40_2|wrn_40_2"):
        create_model("resnet21")


def test_unknown_option_lists_options():
    with pytest.raises(UsageError, match="'depth'.*options are: width, blocks"):
        create_model("resnet20", depth=20)


@pytest.mark.parametrize("spec", [
    {"name": "resnet20", "width": 0},
    {"name": "resnet20", "blocks": [1, 1]},
    {"name": "resnet18", "blocks": [1, 0, 1, 1]},
    {"name": "wrn_16_1", "depth": 17},
    {"name": "wrn_16_1", "widen": 1.5},
    {"name": "resnet18", "small_input": "yes"},
    {"name": "resnet20", "num_classes": 0},
])
def test_bad_option_values_are_usage_errors(spec):
    with pytest.raises(UsageError):
        create_model(**spec)


def test_no_inplace_activations_left():
    with torch.device("meta"):
        for name in ("resnet18", "mobilenetv2", "densenet121"):
            model = create_model(name)
            assert not any(getattr(m, "inplace", False) for m in model.modules())
