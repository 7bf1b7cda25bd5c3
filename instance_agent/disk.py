"""The disk check before the jobs start: a full disk would lose the state file and the logs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from typing import Callable


def disk_warnings(
    paths: Iterable[str],
    threshold_percent: float,
    usage: Callable[[str], tuple[int, int, int]] = shutil.disk_usage,
) -> list[str]:
    """One warning per filesystem (of ``paths``) fuller than ``threshold_percent``."""
    warnings, seen = [], set()
    for path in paths:
        try:
            device = os.stat(path).st_dev
            if device in seen:
                continue
            seen.add(device)
            total, _used, free = usage(path)
        except OSError as error:
            warnings.append(f"disk check of {path} failed: {error}")
            continue
        if total <= 0:
            continue
        percent = 100.0 * (total - free) / total
        if percent > threshold_percent:
            warnings.append(
                f"disk holding {path} is {percent:.0f}% full (warning above {threshold_percent:g}%), "
                f"{free / 2**30:.1f} GiB free"
            )
    return warnings
