"""One agent per state directory: an ``flock`` on ``<state-dir>/agent.lock``.

``flock`` belongs to the open file, not to the process: a descriptor inherited by the
detached supervisor keeps the lock held after the launching process exits, so the hand-over
has no window in which a second ``run`` could slip in. The kernel drops the lock when the last
holder dies, however it dies (SIGKILL, OOM, reboot): there is never a stale lock to clean up.
"""

from __future__ import annotations

import errno
import fcntl
import os

LOCK_FILE_NAME = "agent.lock"


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
        """Take the lock without waiting: :class:`LockBusy` when held, ``OSError`` on I/O errors."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read(fd)
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockBusy(self.path, holder) from None
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
        """Write who holds the lock (pid, date, role) for a second ``run`` to report."""
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text.encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = None


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        return ""
