"""Unusable layer choices fail at build time with a message naming term, layers and shapes."""

import pytest
import torch

from edgedistill.errors import UsageError
from edgedistill.losses import build_loss

from .helpers import make_inputs


def term(name, **params):
    return build_loss(name, student_layers=["layer2"], teacher_layers=["layer3"], **params)


@pytest.mark.parametrize("name", ["nst", "sp", "pkt", "rkd", "fitnet", "crd"])
def test_batch_mismatch_names_everything(name):
    with pytest.raises(UsageError) as err:
        term(name).build([torch.Size([8, 16, 4, 4])], [torch.Size([4, 32, 4, 4])])
    message = str(err.value)
    for part in (repr(name), "'layer2'", "'layer3'", "(8, 16, 4, 4)", "(4, 32, 4, 4)",
                 "batch sizes differ", "hook layers"):
        assert part in message


@pytest.mark.parametrize("name", ["at", "nst"])
def test_map_only_terms_reject_embeddings_and_suggest_an_adaptor(name):
    with pytest.raises(UsageError, match=r"feature maps \[B, C, H, W\].*'fitnet'"):
        term(name).build([torch.Size([8, 16])], [torch.Size([8, 32, 4, 4])])


def test_at_accepts_different_channels_and_sizes():
    at = term("at")
    at.build([torch.Size([8, 16, 8, 8])], [torch.Size([8, 64, 4, 4])])
    loss = at(make_inputs([torch.randn(8, 16, 8, 8)], [torch.randn(8, 64, 4, 4)]))
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() > 0


def test_batch_mismatch_at_run_time_is_a_usage_error():
    sp = term("sp")
    with pytest.raises(UsageError, match="batch sizes differ"):
        sp(make_inputs([torch.ones(4, 3)], [torch.ones(2, 3)]))


def test_layer_lists_must_pair_up():
    with pytest.raises(UsageError, match="same, non-zero length"):
        build_loss("at", student_layers=["a", "b"], teacher_layers=["c"])
    with pytest.raises(UsageError, match="same, non-zero length"):
        build_loss("fitnet")


def test_fsp_needs_in_out_pairs():
    with pytest.raises(UsageError, match="even number"):
        build_loss("fsp", student_layers=["a", "b", "c"], teacher_layers=["d", "e", "f"])


def test_adaptor_terms_refuse_to_run_unbuilt():
    with pytest.raises(RuntimeError, match="build"):
        term("fitnet")(make_inputs([torch.ones(2, 3)], [torch.ones(2, 3)]))
