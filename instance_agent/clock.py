"""Time, behind one small class so tests can swap in a fake clock."""

from __future__ import annotations

import time
from datetime import datetime, timezone


class SystemClock:
    """Wall time for records (UTC) and a monotonic clock for every timeout and interval."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:  # only Supervisor._abort waits without the signal pipe
        if seconds > 0:
            time.sleep(seconds)


def format_time(moment: datetime) -> str:
    """UTC ISO-8601 with milliseconds and a ``Z``: ``2026-11-23T00:00:05.123Z``."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
