"""The console's units: shares and durations rounded, with their unit."""

from __future__ import annotations

from harness.units import millis, percent


def test_a_share_prints_as_a_rounded_percentage() -> None:
    assert percent(0.0016492578339747377) == "0.16 %"
    assert percent(0.905) == "90.50 %"
    assert percent(0.578, 1) == "57.8 %"
    assert percent(None) == "n/a"


def test_milliseconds_print_rounded_with_their_unit() -> None:
    assert millis(37.129717038961644) == "37.1 ms"
    assert millis(-24.0) == "-24.0 ms"
    assert millis(None) == "n/a"
