"""Forward hooks by module path, and the stage/embedding/logits aliases."""

import pytest
import torch
from torch import nn

from edgedistill.errors import UsageError
from edgedistill.models import FeatureExtractor, create_model, resolve_layer_aliases, valid_paths


@pytest.fixture(scope="module")
def resnet8():
    return create_model("resnet8", in_channels=1).eval()


def test_nested_paths_as_context_manager(resnet8):
    paths = ["layer2", "layer2.0.relu", "layer3.0.downsample.1", "avgpool"]
    with FeatureExtractor(resnet8, paths) as hooks:
        resnet8(torch.randn(2, 1, 28, 28))
        shapes = {p: tuple(t.shape) for p, t in hooks.features.items()}
        assert [t.shape for t in hooks.tensors()] == [hooks.features[p].shape for p in paths]
    assert shapes == {"layer2": (2, 32, 14, 14), "layer2.0.relu": (2, 32, 14, 14),
                      "layer3.0.downsample.1": (2, 64, 7, 7), "avgpool": (2, 64, 1, 1)}
    assert hooks.features == {}
    assert not resnet8._forward_pre_hooks and not resnet8.layer2._forward_hooks


def test_persistent_extractor_keeps_only_the_latest_forward(resnet8):
    hooks = FeatureExtractor(resnet8, ["layer1", "fc"])
    resnet8(torch.zeros(2, 1, 32, 32))
    first = hooks.features["layer1"]
    logits = resnet8(torch.ones(1, 1, 32, 32))
    assert hooks.features["layer1"].shape[0] == 1 and first.shape[0] == 2
    assert torch.equal(hooks.features["fc"], logits)
    hooks.remove()
    resnet8(torch.zeros(1, 1, 32, 32))
    assert hooks.features == {}


def test_features_keep_gradients():
    model = create_model("resnet8")
    with FeatureExtractor(model, ["layer1.0"]) as hooks:
        model(torch.randn(2, 1, 16, 16))
        hooks.features["layer1.0"].pow(2).mean().backward()
    assert model.conv1.weight.grad is not None


def test_missing_path_lists_close_matches_first(resnet8):
    with pytest.raises(UsageError) as err:
        FeatureExtractor(resnet8, ["layer2.0.rleu"])
    message = str(err.value)
    assert "did you mean layer2.0.relu" in message
    assert message.index("layer2.0.relu") < message.index("conv1")
    assert "valid paths:" in message


def test_long_path_lists_are_truncated():
    model = create_model("resnet110")
    with pytest.raises(UsageError, match=r"\.\.\. and \d+ more"):
        FeatureExtractor(model, ["nope"])


def test_in_place_change_after_the_hook_is_caught():
    class AddInPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            out = self.conv(x)
            out += 1
            return out

    model = AddInPlace()
    with FeatureExtractor(model, ["conv"]) as hooks:
        model(torch.zeros(1, 1, 2, 2))
        with pytest.raises(UsageError, match="modified in place"):
            hooks.tensors()


def test_module_that_did_not_run_is_reported():
    model = create_model("resnet8").eval()
    model.unused = nn.ReLU()
    with FeatureExtractor(model, ["fc", "unused"]) as hooks:
        model(torch.zeros(1, 1, 8, 8))
        with pytest.raises(UsageError, match="unused did not run"):
            hooks.tensors()


def test_valid_paths_on_any_module():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.ReLU()))
    assert valid_paths(model) == ["0", "1", "1.0"]


def test_aliases(resnet8):
    names = ["stage1", "stage-1", "embedding", "logits", "layer2.0.bn1"]
    assert resolve_layer_aliases(resnet8, names) == [
        "layer1", "layer3", "avgpool", "fc", "layer2.0.bn1"]
    with torch.device("meta"):
        mobilenet = create_model("mobilenetv2_tiny")
    assert resolve_layer_aliases(mobilenet, ["stage4", "logits"]) == ["features.18", "classifier"]


@pytest.mark.parametrize("alias", ["stage0", "stage4", "stage-4"])
def test_stage_out_of_range(resnet8, alias):
    with pytest.raises(UsageError, match="3 stages.*layer1, layer2, layer3"):
        resolve_layer_aliases(resnet8, [alias])


def test_aliases_on_a_plain_module():
    model = nn.Sequential(nn.Linear(2, 2))
    assert resolve_layer_aliases(model, ["0"]) == ["0"]
    for alias in ("stage1", "embedding", "logits"):
        with pytest.raises(UsageError):
            resolve_layer_aliases(model, [alias])
