"""Is the process a record names still the same live process?

A pid alone is not enough: after a reboot or a long day, the number may belong to another
program. The identity recorded with every job is the boot id plus the process's start time
(in clock ticks since boot, from ``/proc/<pid>/stat``), which no other process can share.
Where ``/proc`` is missing (not Linux), liveness falls back to ``kill(pid, 0)``.
"""

from __future__ import annotations

import os

_BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def boot_id() -> str | None:
    try:
        with open(_BOOT_ID_PATH, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _stat_fields(pid: int) -> list | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return text[text.rfind(")") + 2 :].split()


def identity(pid: int) -> str | None:
    """``<boot id>:<start ticks>`` of a live process, ``None`` when unknown or gone."""
    fields = _stat_fields(pid)
    boot = boot_id()
    if not fields or boot is None or len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return f"{boot}:{fields[19]}"  # field 22 of stat(5), starttime


def is_alive(pid: int | None, recorded_identity: str | None) -> bool:
    """True when ``pid`` is still the process that was recorded (zombies count as dead)."""
    if not pid or pid <= 0:
        return False
    if boot_id() is not None:
        current = identity(pid)
        return current is not None and (recorded_identity is None or current == recorded_identity)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
