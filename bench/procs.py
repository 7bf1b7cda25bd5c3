"""Peak memory of process trees, sampled from ``/proc`` (Linux).

``VmHWM`` is a process's peak resident set size so far; sampled every ``interval`` seconds until
the process exits, its last sample is its peak (a lower bound when it exits between samples).
Airflow's processes set their titles (``setproctitle``), which is how their kind is told apart:
``airflow worker -- <task instance id>`` is a task's own process (its supervisor is the
``airflow worker -- LocalExecutor: ...`` process that forked it), and the triggerer runs its
triggers in a child ``python -m airflow triggerer`` process.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil

_TASK_PROCESS = re.compile(r"^airflow worker -- (?!LocalExecutor)\S+")


def kilobytes(pid: int) -> dict[str, int]:
    """The ``kB`` values of ``/proc/<pid>/status`` (``VmHWM``, ``VmRSS``, ...); none once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return {}
    return {
        key: int(value.split()[0])
        for key, value in (line.split(":", 1) for line in lines if line.endswith(" kB"))
    }


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def process_tree(roots: Iterable[int]) -> dict[int, int]:
    """``{pid: parent pid}`` of the roots and every live process below them."""
    found: dict[int, int] = {}
    for root in roots:
        processes: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            processes.append(psutil.Process(root))
            processes += processes[0].children(recursive=True)
        for process in processes:
            with contextlib.suppress(psutil.Error):
                found[process.pid] = process.ppid()
    return found


def is_task_process(title: str) -> bool:
    return bool(_TASK_PROCESS.match(title))


@dataclass
class ProcessPeak:
    pid: int
    title: str
    parent: int
    peak_kb: int = 0


@dataclass
class TreeSampler:
    """Samples a process tree's memory in a thread: per-process peaks, and the tasks' peak sum."""

    roots: Callable[[], Iterable[int]]
    interval: float = 0.25
    processes: dict[int, ProcessPeak] = field(default_factory=dict)
    # The largest sum of the task processes' resident sizes seen at one sample.
    peak_tasks_total_kb: int = 0
    peak_tasks_at_once: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._loop, name="bench-proc-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        tree = process_tree(self.roots())
        total = tasks = 0
        for pid in tree:
            sizes = kilobytes(pid)
            peak, rss = sizes.get("VmHWM"), sizes.get("VmRSS")
            if peak is None:
                continue
            title = command_line(pid)
            known = self.processes.get(pid)
            if known is None or known.title != title:
                # A new process, or a forked worker that took a task's title: a process of its own.
                known = self.processes[pid] = ProcessPeak(pid, title, tree[pid])
            known.peak_kb = max(known.peak_kb, peak)
            if is_task_process(title):
                total += rss or 0
                tasks += 1
        self.peak_tasks_total_kb = max(self.peak_tasks_total_kb, total)
        self.peak_tasks_at_once = max(self.peak_tasks_at_once, tasks)

    def task_peaks(self) -> list[int]:
        return [p.peak_kb for p in self.processes.values() if is_task_process(p.title)]

    def peak_of(self, predicate: Callable[[ProcessPeak], bool]) -> int | None:
        peaks = [p.peak_kb for p in self.processes.values() if predicate(p)]
        return max(peaks) if peaks else None
