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


def test_loss_config_checks_name_and_params_against_the_loss_signature():
    from edgedistill.config import LossConfig

    with pytest.raises(ValueError, match="unknown loss 'hinton'; choose one of: ab, at"):
        LossConfig(name="hinton")
    with pytest.raises(ValueError, match="unknown params key 'temprature' for loss 'kd'; "
                                         "allowed: start_epoch, temperature"):
        LossConfig(name="kd", params={"temprature": 2})
    with pytest.raises(ValueError, match="loss 'dkd' warmup_epochs: Input should be greater"):
        LossConfig(name="dkd", params={"warmup_epochs": -1})
    with pytest.raises(ValueError, match="loss 'crd' queue_size: Input should be a valid int"):
        LossConfig(name="crd", params={"queue_size": "big"})
    typed = LossConfig(name="reviewkd", params={"mid_channels": "32"})
    assert typed.params == {"mid_channels": 32} and typed.weight is None
    assert build_loss("reviewkd", student_layers=["a"], teacher_layers=["b"],
                      **typed.params).mid_channels == 32
