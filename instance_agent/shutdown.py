"""Stopping the machine once every job has ended, at once (``--shutdown`` in the README)."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence
from typing import Callable

log = logging.getLogger("instance_agent")

SHUTDOWN_OS = "os"
SHUTDOWN_EC2 = "ec2"
SHUTDOWN_NONE = "none"
SHUTDOWN_MODES = (SHUTDOWN_OS, SHUTDOWN_EC2, SHUTDOWN_NONE)

OS_SHUTDOWN_COMMAND = ("shutdown", "-h", "now")


def run_os_command(command: Sequence[str]) -> bool:
    try:
        completed = subprocess.run(list(command), timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.error("%s failed: %s", " ".join(command), error)
        return False
    if completed.returncode != 0:
        log.error("%s exited %s", " ".join(command), completed.returncode)
        return False
    return True


def shut_down(
    mode: str,
    *,
    stop_instance: Callable[[], bool],
    run_command: Callable[[Sequence[str]], bool] = run_os_command,
) -> bool:
    """Shut the machine down as ``mode`` says; False when that failed."""
    if mode == SHUTDOWN_NONE:
        log.info("--shutdown none: leaving the machine running")
        return True
    if mode == SHUTDOWN_EC2:
        log.info("stopping this instance with StopInstances")
        return stop_instance()
    if mode == SHUTDOWN_OS:
        log.info("running %s", " ".join(OS_SHUTDOWN_COMMAND))
        return run_command(OS_SHUTDOWN_COMMAND)
    raise ValueError(f"unknown shutdown mode {mode!r}; expected one of {SHUTDOWN_MODES}")
