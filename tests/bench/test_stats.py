"""Medians, ratios and the number formats of the report."""

from __future__ import annotations

import pytest

from bench import stats


def test_median_and_max_ignore_unknown_values():
    assert stats.median([3.0, None, 1.0, 2.0]) == pytest.approx(2.0)
    assert stats.maximum([None, 4.0, 1.0]) == pytest.approx(4.0)
    assert stats.median([None]) is None and stats.maximum([]) is None


def test_ratio_is_unknown_without_both_values_or_with_a_zero_denominator():
    assert stats.ratio(1.0, 4.0) == pytest.approx(0.25)
    assert stats.ratio(None, 4.0) is None
    assert stats.ratio(1.0, None) is None
    assert stats.ratio(1.0, 0) is None


def test_ratios_print_with_two_decimals_or_three_significant_digits_when_tiny():
    assert stats.times(0.25) == "0.25x"
    assert stats.times(12.0) == "12.00x"
    assert stats.times(0.00123) == "0.00123x"
    assert stats.times(0) == "0x"
    assert stats.times(None) == "—"


def test_seconds_numbers_and_sizes():
    assert stats.seconds(1.234) == "1.2 s"
    assert stats.seconds(None) == "—"
    assert stats.number(12345.6) == "12,346"
    assert stats.number(1.25, 1) == "1.2"
    assert stats.median_max([0.5, 1.5, None, 4.0]) == "1.5 / 4.0 s"
    assert stats.median_max([None]) == "—"
    assert stats.megabytes(2048) == "2 MB"
