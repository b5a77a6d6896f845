"""Numbers for people: latencies in ms and shares in % with 3 significant digits, counts with
thousands separators, never scientific notation."""

from __future__ import annotations

import pytest

from harness.units import count, millis, ms, number, percent, points


def test_a_share_prints_as_a_rounded_percentage() -> None:
    assert percent(0.0016492578339747377) == "0.165 %"
    assert percent(0.905) == "90.5 %"
    assert percent(0.578, 2) == "58 %"
    assert percent(1.0) == "100 %"
    assert percent(0.0) == "0 %"
    assert percent(0.02, signed=True) == "+2 %"
    assert percent(None) == "n/a"


def test_a_difference_of_shares_prints_in_points() -> None:
    assert points(0.02) == "2 points"
    assert points(0.0512) == "5.12 points"
    assert points(None) == "n/a"


def test_milliseconds_print_rounded_with_their_unit() -> None:
    assert millis(37.129717038961644) == "37.1 ms"
    assert millis(-24.0) == "-24 ms"
    assert millis(1238.6) == "1,239 ms"
    assert millis(None) == "n/a"


def test_seconds_print_as_milliseconds() -> None:
    assert ms(0.680989560849798) == "681 ms"
    assert ms(0.05) == "50 ms"
    assert ms(0.0004154) == "0.415 ms"
    assert ms(12.5) == "12,500 ms"
    assert ms(0.0208, signed=True) == "+20.8 ms"
    assert ms(None) == "n/a"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.000415, "0.000415"),
        (5.06e-05, "0.0000506"),
        (37.129, "37.1"),
        (9.996, "10"),
        (999.7, "1,000"),
        (315100, "315,100"),
        (3.151e05, "315,100"),
        (-0.5, "-0.5"),
        (0, "0"),
    ],
)
def test_numbers_have_three_significant_digits_and_no_exponent(value: float, shown: str) -> None:
    assert number(value) == shown
    assert "e" not in number(value)


def test_counts_have_thousands_separators() -> None:
    assert count(232960) == "232,960"
    assert count(3.0) == "3"
    assert count(None) == "n/a"
