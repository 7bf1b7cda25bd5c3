"""Small statistics and formatting: medians, ratios, and numbers as the report prints them."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence


def median(values: Iterable[float | None]) -> float | None:
    """The median of the known values; ``None`` when there are none."""
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def maximum(values: Iterable[float | None]) -> float | None:
    return max((value for value in values if value is not None), default=None)


def elapsed(start: float | None, end: float | None) -> float | None:
    """``end - start``; ``None`` when either is unknown."""
    return None if start is None or end is None else end - start


def ratio(ours: float | None, other: float | None) -> float | None:
    """``ours / other``; ``None`` when either is unknown or ``other`` is zero."""
    return None if ours is None or not other else ours / other


def seconds(value: float | None, digits: int = 1) -> str:
    """``12.3 s``; ``—`` for an unknown value."""
    return "—" if value is None else f"{value:.{digits}f} s"


def number(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def times(value: float | None) -> str:
    """A ratio as ``0.25x``: below 0.01 with three significant digits, ``—`` when unknown."""
    if value is None:
        return "—"
    if value == 0:
        return "0x"
    return f"{value:.3g}x" if abs(value) < 0.01 else f"{value:.2f}x"


def median_max(values: Sequence[float | None], digits: int = 1) -> str:
    """``0.6 / 1.9 s`` (median / max); ``—`` when nothing is known."""
    mid, top = median(values), maximum(values)
    return "—" if mid is None or top is None else f"{mid:.{digits}f} / {top:.{digits}f} s"


def megabytes(kilobytes: float | None) -> str:
    return "—" if kilobytes is None else f"{kilobytes / 1024:,.0f} MB"
