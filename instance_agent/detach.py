"""Handing a prepared run to a detached supervisor, so the SSM command returns in seconds.

``python -m instance_agent _supervise`` starts in a new session with the lock's descriptor
inherited, the run on its stdin, its output in ``_agent.log`` (never the SSM pipes, or the SSM
command would wait for the jobs) and a readiness pipe: it writes ``ready`` once it holds the
lock, before any job starts. No ``ready`` is a failure, and no job has started.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from typing import Any

import instance_agent
from instance_agent.protocol import agent_log_path

READY = b"ready\n"
READY_TIMEOUT = 30.0


class DetachError(Exception):
    pass


def spawn_supervisor(
    payload: dict[str, Any],
    *,
    lock_fd: int,
    log_dir: str,
    run_date: str,
    python: str = sys.executable,
    ready_timeout: float = READY_TIMEOUT,
) -> int:
    """Start the detached supervisor; its pid once it said ``ready``, else :class:`DetachError`."""
    log_path = agent_log_path(log_dir, run_date)
    read_fd, write_fd = os.pipe()
    env = dict(os.environ)
    # The supervisor runs from "/", so make this very copy of the package importable there.
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(instance_agent.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    command = [
        python,
        "-m",
        "instance_agent",
        "_supervise",
        "--lock-fd",
        str(lock_fd),
        "--ready-fd",
        str(write_fd),
    ]
    try:
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                pass_fds=(lock_fd, write_fd),
                start_new_session=True,
                close_fds=True,
                cwd="/",
                env=env,
            )
    except OSError as error:
        os.close(read_fd)
        os.close(write_fd)
        raise DetachError(f"cannot start the supervisor ({python}): {error}") from None
    os.close(write_fd)
    try:
        assert popen.stdin is not None
        popen.stdin.write(json.dumps(payload).encode())
        popen.stdin.close()
    except BrokenPipeError:
        pass  # it died at once; the readiness check below says so
    answer = _wait_ready(read_fd, ready_timeout)
    os.close(read_fd)
    if answer == "ready":
        return popen.pid
    try:
        # Closed the pipe without "ready": it is exiting. Silent past the timeout: it hangs
        # before its first job, so nothing ran and killing it frees the lock.
        code = popen.wait(timeout=2 if answer == "closed" else 0)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()
        raise DetachError(
            f"the supervisor did not get ready within {ready_timeout:g} s; see {log_path}"
        ) from None
    raise DetachError(f"the supervisor exited {code} before it was ready; see {log_path}")


def _wait_ready(read_fd: int, timeout: float) -> str:
    """``ready``, ``closed`` (EOF without ready) or ``timeout``."""
    deadline = time.monotonic() + timeout
    received = b""
    while time.monotonic() < deadline:
        readable, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            break
        chunk = os.read(read_fd, 64)
        if not chunk:
            return "closed"
        received += chunk
        if READY in received:
            return "ready"
    return "timeout"


def signal_ready(ready_fd: int) -> None:
    """Supervisor side: tell the launcher we hold the lock; it then prints the plan and exits."""
    try:
        os.write(ready_fd, READY)
    except OSError:
        pass  # the launcher is gone; the run goes on regardless
    finally:
        os.close(ready_fd)
