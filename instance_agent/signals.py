"""The agent's signal handling: everything happens in the supervisor's loop, never in a handler."""

from __future__ import annotations

import fcntl
import os
import select
import signal
from typing import Any


class SignalRecorder:
    """Handlers that only append to a list; ``set_wakeup_fd`` makes the loop's ``select`` return."""

    HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)

    def __init__(self) -> None:
        self._received: list[int] = []
        self._read_fd: int | None = None
        self._write_fd: int | None = None

    def install(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        for fd in (self._read_fd, self._write_fd):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
            os.set_inheritable(fd, False)
        signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        for signum in self.HANDLED:
            signal.signal(signum, self._record)

    def _record(self, signum: int, frame: Any) -> None:
        self._received.append(signum)

    def take(self) -> list[int]:
        taken = self._received[:]
        del self._received[: len(taken)]  # a signal arriving meanwhile stays queued
        return taken

    def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, less when a signal arrives."""
        if self._read_fd is None:
            return
        try:
            ready, _, _ = select.select([self._read_fd], [], [], max(0.0, timeout))
        except InterruptedError:
            return
        if ready:
            try:
                while os.read(self._read_fd, 512):
                    pass
            except BlockingIOError:
                pass
