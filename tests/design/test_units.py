"""Budgets in human units: SI and IEC sizes, times, speeds; clear errors naming the option."""

import pytest

from edgedistill.design.units import fmt_bytes, fmt_flops, parse_bytes, parse_flops, parse_ms
from edgedistill.errors import UsageError


@pytest.mark.parametrize("text,expected", [
    ("2MB", 2_000_000), ("512KiB", 524_288), ("1.5GB", 1_500_000_000), ("800000", 800_000),
    (800_000, 800_000), ("1kB", 1000), ("1 KB", 1000), ("2 MiB", 2 * 1024 ** 2), ("3M", 3e6),
])
def test_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("15ms", 15.0), ("0.5s", 500.0), ("800us", 0.8), ("800µs", 0.8), (15, 15.0), ("2 MS", 2.0),
])
def test_time_in_ms(text, expected):
    assert parse_ms(text) == pytest.approx(expected)


@pytest.mark.parametrize("text,expected", [
    ("5GFLOPS", 5e9), ("5 GFLOP/s", 5e9), ("1.2TFLOPS", 1.2e12), ("5e9", 5e9),
    ("800mflops", 8e8), (2e9, 2e9),
])
def test_speed(text, expected):
    assert parse_flops(text) == pytest.approx(expected)


@pytest.mark.parametrize("parse,text,needle", [
    (parse_bytes, "2Mb", "bits"), (parse_bytes, "abc", "cannot read"),
    (parse_bytes, "-1MB", "positive"), (parse_bytes, "0", "positive"),
    (parse_bytes, "2XB", "unknown unit"), (parse_bytes, True, "expected"),
    (parse_ms, "15 parsecs", "unknown unit"), (parse_ms, "nan", "cannot read"),
    (parse_flops, "5GB", "not a speed"), (parse_flops, "5 GHz", "not a speed"),
    (parse_flops, "5 XFLOPS", "unknown prefix"),
])
def test_errors_name_the_option_and_show_examples(parse, text, needle):
    with pytest.raises(UsageError, match=needle) as err:
        parse(text, "--opt")
    message = str(err.value)
    assert message.startswith("--opt: ") and ("e.g." in message or "like" in message)


def test_formatting():
    assert fmt_bytes(2e6) == "2 MB" and fmt_bytes(512) == "512 B" and fmt_bytes(151e3) == "151 kB"
    assert fmt_flops(62e6) == "62 MFLOPs" and fmt_flops(5e9, per_s=True) == "5 GFLOP/s"
