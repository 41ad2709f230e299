import re

import pytest

from edgedistill.errors import UsageError
from edgedistill.losses import LOSSES, LossTerm, build_loss

ALL = {"ce", "kd", "fitnet", "at", "sp", "pkt", "rkd", "nst", "cc", "vid", "ft", "ab", "fsp",
       "crd", "dkd", "dist", "logit_std_kd", "reviewkd", "hint+kd"}
LOGIT_ONLY = {"ce", "kd", "dkd", "dist", "logit_std_kd"}


def test_every_method_is_registered():
    assert set(LOSSES.names()) == ALL


@pytest.mark.parametrize("name", sorted(ALL))
def test_description_citation_and_flags(name):
    cls = LOSSES.get(name)
    assert issubclass(cls, LossTerm)
    assert len(LOSSES.describe(name)) > 10
    assert re.search(r"(19|20)\d\d", cls.__doc__), "docstring must cite the paper's year"
    assert cls.name == name
    assert cls.default_weight > 0
    assert "default_weight" in cls.__doc__, "the docstring must say where the default weight is from"
    assert cls.needs_features == (name not in LOGIT_ONLY)
    assert cls.needs_teacher == (name != "ce")


def test_unknown_name_lists_the_choices():
    with pytest.raises(UsageError, match="kd"):
        build_loss("hinton")


def test_build_loss_passes_params():
    assert build_loss("kd", temperature=2.5).temperature == 2.5
