"""One thread that runs callbacks at given times, one after another, outside its lock (a callback
may schedule or cancel others); one that raises is logged."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("fleet_sim")


class Scheduler:
    def __init__(self, name: str = "fleet-sim-scheduler"):
        self._condition = threading.Condition()
        self._queue: list[tuple[float, int, Callable[[], Any]]] = []
        self._cancelled: set[int] = set()
        self._ids = itertools.count(1)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call_later(self, delay: float, callback: Callable[[], Any]) -> int:
        """Run ``callback`` in ``delay`` seconds (at once when ``delay <= 0``); returns its id."""
        when = time.monotonic() + max(0.0, delay)
        with self._condition:
            handle = next(self._ids)
            heapq.heappush(self._queue, (when, handle, callback))
            self._condition.notify()
            return handle

    def cancel(self, handle: int | None) -> None:
        if handle is None:
            return
        with self._condition:
            self._cancelled.add(handle)

    def stop(self, timeout: float = 5.0) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._stopped:
                    if self._queue:
                        wait = self._queue[0][0] - time.monotonic()
                        if wait <= 0:
                            break
                        self._condition.wait(wait)
                    else:
                        self._condition.wait()
                if self._stopped:
                    return
                _, handle, callback = heapq.heappop(self._queue)
                if handle in self._cancelled:
                    self._cancelled.discard(handle)
                    continue
            try:
                callback()
            except Exception:
                log.exception("scheduled callback %r failed", callback)
