"""The search: with a FLOPs-based profile it is deterministic, so a known budget yields a
known student; every rejection carries its reason; the front is non-dominated."""

import pytest

from edgedistill.design.profiles import DeviceProfile
from edgedistill.design.search import family_specs, search, zoo_specs
from edgedistill.errors import UsageError
from edgedistill.models import count_flops, count_params, create_model, student_name

PROFILE = DeviceProfile(name="test", storage_bytes=400_000, max_time_ms=10, flops_per_s=4e9)


@pytest.fixture(scope="module")
def teacher():
    return create_model("resnet20")


@pytest.fixture(scope="module")
def design(teacher):
    return search(teacher, "resnet20", (1, 28, 28), PROFILE, widths=(0.5, 1.0), zoo=False)


def test_candidates_are_depth_per_stage_times_width(teacher):
    names = {student_name(s) for s in family_specs(teacher, (0.5, 1.0))}
    assert len(names) == 27 * 2
    assert {"resnet8", "resnet14", "resnet20", "resnet20-b3_1_1", "resnet8-w0.5"} <= names


def test_known_budget_gives_known_student(design):
    c = design.chosen
    assert c.name == "resnet20-b3_1_1" and c.spec["blocks"] == [3, 1, 1]
    model = create_model(**c.spec)
    assert c.params == count_params(model) == 87_098
    assert c.flops == count_flops(model, (1, 28, 28)) == 33_142_528
    assert c.storage_bytes == 4 * c.params <= PROFILE.storage_bytes
    assert c.latency_ms == pytest.approx(c.flops / 4e9 * 1e3)
    assert c.latency_ms <= PROFILE.max_time_ms
    fitting = [x for x in design.candidates if x.fits]
    assert c.flops == max(x.flops for x in fitting)


def test_every_rejection_has_reasons_with_numbers(design):
    by_name = {c.name: c for c in design.candidates}
    teacher_arch = by_name["resnet20"]
    assert teacher_arch.origin == "teacher's architecture"
    assert teacher_arch.reasons == ["storage 1.09 MB > 400 kB", "latency 15.5 ms > 10 ms"]
    assert by_name["resnet20-b2_2_1"].reasons == ["storage 404 kB > 400 kB"]
    assert all(c.reasons for c in design.candidates if not c.fits)


def test_pareto_front_is_not_dominated(design):
    fitting = [c for c in design.candidates if c.fits]
    assert design.pareto[0] is design.chosen
    for p in design.pareto:
        assert p.fits
        for o in fitting:
            better = (o.flops >= p.flops and o.storage_bytes <= p.storage_bytes
                      and o.latency_ms <= p.latency_ms)
            assert not better or (o.flops, o.storage_bytes, o.latency_ms) == (
                p.flops, p.storage_bytes, p.latency_ms)


def test_activation_budget_and_precision(teacher):
    tight = DeviceProfile(storage_bytes=400_000, activation_bytes=30_000, precision="int8")
    d = search(teacher, "resnet20", (1, 28, 28), tight, widths=(0.5, 1.0), zoo=False)
    assert d.chosen.name == "resnet20-w0.5"  # full width needs 3 x 16 x 28 x 28 = 37.6 kB
    assert d.chosen.activation_bytes == 18_816 and d.chosen.storage_bytes == d.chosen.params
    assert "activations 37.6 kB > 30 kB" in d.candidates[0].reasons


def test_zoo_students_smaller_than_the_teacher():
    wrn = create_model("wrn_16_2")
    assert "mobilenetv2_tiny" in [s["name"] for s in zoo_specs(wrn)]
    d = search(wrn, "wrn_16_2", (1, 28, 28), DeviceProfile(storage_bytes=2_000_000),
               widths=(1.0,), zoo=True)
    assert {c.name for c in d.candidates if c.origin != "zoo"} == {"wrn_10_2", "wrn_16_2"}
    zoo = {c.name for c in d.candidates if c.origin == "zoo"}
    assert {"mobilenetv2_tiny", "resnet32", "wrn_16_1"} <= zoo
    assert "resnet8x4" not in zoo  # 1.2M parameters: more than the teacher's 0.69M


def test_no_budget_and_bad_widths_are_usage_errors(teacher):
    with pytest.raises(UsageError, match="no budget"):
        search(teacher, "t", (1, 28, 28), DeviceProfile(flops_per_s=1e9))
    with pytest.raises(UsageError, match="width"):
        search(teacher, "t", (1, 28, 28), PROFILE, widths=(0.0, 1.0))
