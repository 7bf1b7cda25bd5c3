"""One agent per state directory: an ``flock`` on ``<state-dir>/agent.lock``.

``flock`` belongs to the open file: the descriptor inherited by the detached supervisor keeps
the lock held after the launching process exits, with no window for a second ``run``. The
kernel drops it when the last holder dies, however it dies: never a stale lock to clean up.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
from dataclasses import dataclass

from instance_agent.protocol import JOB_NAME_PATTERN

LOCK_FILE_NAME = "agent.lock"
HOLDER_BYTES = 200  # what a second agent reads of the holder line
# The role is matched with the looser job-name rule: an earlier agent version took such roles
# and may still hold the lock.
_HOLDER = re.compile(
    rf"pid (?P<pid>[0-9]+) role (?P<role>{JOB_NAME_PATTERN.pattern}) "
    r"date (?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
)


@dataclass(frozen=True)
class Holder:
    pid: int
    role: str
    date: str

    def text(self) -> str:
        return f"pid {self.pid} role {self.role} date {self.date}\n"

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """``None`` for an empty file (the instant after the lock is taken), any other format, garbage."""
        match = _HOLDER.fullmatch(text.strip())
        return None if match is None else cls(int(match["pid"]), match["role"], match["date"])


class LockBusy(Exception):
    """Another live agent holds the lock; ``holder`` is what it wrote in the lock file."""

    def __init__(self, path: str, holder: str):
        super().__init__(f"{path} is held by another agent ({holder or 'unknown'})")
        self.path = path
        self.holder = holder


class StateDirLock:
    def __init__(self, state_dir: str):
        self.path = os.path.join(state_dir, LOCK_FILE_NAME)
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock without waiting: :class:`LockBusy` when held."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockBusy(self.path, read_holder(self.path)) from None
            raise
        self.fd = fd

    @classmethod
    def adopt(cls, state_dir: str, fd: int) -> StateDirLock:
        """Take over a descriptor inherited from the launching process (which locked it)."""
        lock = cls(state_dir)
        # Re-locking our own open file description succeeds at once; anything else means
        # the descriptor is not the lock it claims to be.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.fd = fd
        return lock

    def describe_holder(self, text: str) -> None:
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text.encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = None


def read_holder(path: str) -> str:
    """``""`` when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read(HOLDER_BYTES).decode(errors="replace").strip()
    except OSError:
        return ""
