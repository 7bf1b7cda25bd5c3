"""Finding and signalling every process of one simulated host.

The agent and its jobs detach into sessions of their own, but all inherit the host's
``FLEET_SIM_HOST=<simulator id>/<instance id>``: ``/proc/<pid>/environ`` finds them all.
"""

from __future__ import annotations

import contextlib
import os
import signal

MARKER_VARIABLE = "FLEET_SIM_HOST"


def marked_pids(marker: str) -> list[int]:
    """Live processes whose starting environment holds ``FLEET_SIM_HOST=<marker>``."""
    needle = f"\0{MARKER_VARIABLE}={marker}\0".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                environ = b"\0" + handle.read()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if needle in environ:
            found.append(int(name))
    return found


def command_line(pid: int) -> str:
    """The process's argv joined by spaces; empty when it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", errors="replace").strip()
    except OSError:
        return ""


def signal_pids(pids: list[int], signum: int) -> list[int]:
    """Send ``signum`` to each pid; returns the pids that received it."""
    sent = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
            sent.append(pid)
    return sent


def signal_group(pid: int, signum: int = signal.SIGKILL) -> None:
    """Signal the process group ``pid`` leads (a command started in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
