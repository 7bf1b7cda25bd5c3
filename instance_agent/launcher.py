"""Starting jobs: each in its own session, output to its log file, waited on as our own child."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Mapping
from typing import BinaryIO

from instance_agent import procinfo
from instance_agent.spec import JobSpec

# poll() result of a watched process that is gone: it was not our child, so no exit code.
EXIT_UNKNOWN = object()


class LaunchError(Exception):
    """The job could not be started (missing program or cwd, no permission)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code  # what a shell would answer: 127 not found, 126 not runnable


class ProcessHandle:
    pid: int

    def poll(self) -> object:
        """``None`` while running; the exit code (negative: killed by that signal) once reaped."""
        raise NotImplementedError

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the job's whole process group (its session)."""
        raise NotImplementedError


class ChildProcess(ProcessHandle):
    def __init__(self, popen: subprocess.Popen):
        self._popen = popen
        self.pid = popen.pid

    def poll(self) -> object:
        return self._popen.poll()  # waitpid(WNOHANG) on our own child

    def signal(self, signum: int) -> None:
        if self._popen.returncode is not None:
            return  # reaped: the pid may already belong to someone else
        try:
            os.killpg(self.pid, signum)  # start_new_session made the job its group leader
        except ProcessLookupError:
            pass
        except PermissionError:
            self._popen.send_signal(signum)


class WatchedProcess(ProcessHandle):
    """A job started by an earlier agent that is still alive: watched by identity, not waited on."""

    def __init__(self, pid: int, identity: str | None):
        self.pid = pid
        self._identity = identity

    def poll(self) -> object:
        return None if procinfo.is_alive(self.pid, self._identity) else EXIT_UNKNOWN

    def signal(self, signum: int) -> None:
        if not procinfo.is_alive(self.pid, self._identity):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)


class PopenLauncher:
    def start(self, job: JobSpec, *, log_path: str, env: Mapping[str, str], header: str) -> ProcessHandle:
        """Start ``job`` with its output appended to ``log_path`` (after ``header``)."""
        with _open_log(log_path) as log:
            log.write(header.encode("utf-8", errors="replace"))
            log.flush()
            try:
                popen = subprocess.Popen(
                    job.command(),
                    cwd=job.cwd,
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own session: signals reach the job's whole tree
                    close_fds=True,
                )
            except OSError as error:
                message = f"cannot start {job.command()[0]!r} in {job.cwd!r}: {error.strerror or error}"
                log.write(f"# fleet-agent: {message}\n".encode())
                code = 127 if error.errno in (errno.ENOENT, errno.ENOTDIR) else 126
                raise LaunchError(message, code) from None
        return ChildProcess(popen)


def _open_log(log_path: str) -> BinaryIO:
    try:
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        return open(log_path, "ab")
    except OSError as error:
        raise LaunchError(f"cannot open the job's log {log_path!r}: {error.strerror or error}", 126) from None
