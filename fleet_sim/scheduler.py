"""One thread that runs callbacks at given times (the standard library's ``sched``), one after
another, so a callback may schedule or cancel others; one that raises is logged."""

from __future__ import annotations

import contextlib
import logging
import sched
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("fleet_sim")


class Scheduler:
    def __init__(self, name: str = "fleet-sim-scheduler"):
        self._wake = threading.Event()  # set when the queue changed: the thread looks again
        self._stopped = False
        self._queue = sched.scheduler(time.monotonic, self._sleep)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call_later(self, delay: float, callback: Callable[[], Any]) -> sched.Event:
        """Run ``callback`` in ``delay`` seconds (at once when ``delay <= 0``); returns its handle."""
        handle = self._queue.enter(max(0.0, delay), 0, self._call, (callback,))
        self._wake.set()
        return handle

    def cancel(self, handle: sched.Event | None) -> None:
        if handle is not None:
            with contextlib.suppress(ValueError):  # it ran already
                self._queue.cancel(handle)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped = True
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _sleep(self, seconds: float) -> None:
        if self._stopped:
            for handle in self._queue.queue:
                self.cancel(handle)
        elif self._wake.wait(seconds):
            self._wake.clear()

    def _run(self) -> None:
        while True:
            self._queue.run()  # until the queue is empty (all of it cancelled once stopped)
            if self._stopped:
                return
            self._wake.wait()
            self._wake.clear()

    def _call(self, callback: Callable[[], Any]) -> None:
        if self._stopped:
            return
        try:
            callback()
        except Exception:
            log.exception("scheduled callback %r failed", callback)
