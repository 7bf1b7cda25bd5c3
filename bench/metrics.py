"""The benchmark's metrics, computed from what the simulator recorded (pure functions, testable).

Inputs are the simulator's timeline entries (``{t, instance_id, event, to, ...}``) and API call
log entries (``{t, operation, caller, ...}``). The orchestration's calls are those with a
``caller``: the Amazon provider names the operator or sensor (``Caller/...``), and a hook made
in a trigger says ``Unknown``. The agent's and the bench's own calls have none.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.stats import elapsed


@dataclass(frozen=True)
class WorkerStop:
    """One worker's last job end and when its instance went ``stopping`` and ``stopped``."""

    instance_id: str
    job_start: float | None
    job_end: float | None
    stopping: float | None
    stopped: float | None

    @property
    def idle_to_stopping(self) -> float | None:
        return elapsed(self.job_end, self.stopping)

    @property
    def idle_to_stopped(self) -> float | None:
        return elapsed(self.job_end, self.stopped)


def state_changes(events: Iterable[Mapping[str, Any]], instance_id: str, to: str) -> list[float]:
    return sorted(
        event["t"]
        for event in events
        if event.get("event") == "state" and event.get("instance_id") == instance_id and event.get("to") == to
    )


def worker_stop(
    events: Sequence[Mapping[str, Any]],
    instance_id: str,
    job_start: float | None,
    job_end: float | None,
) -> WorkerStop:
    """The first ``stopping`` at or after the job's end, and the ``stopped`` that followed it."""
    stopping = next(
        (t for t in state_changes(events, instance_id, "stopping") if job_end is not None and t >= job_end),
        None,
    )
    stopped = next(
        (t for t in state_changes(events, instance_id, "stopped") if stopping is not None and t >= stopping),
        None,
    )
    return WorkerStop(instance_id, job_start, job_end, stopping, stopped)


def signer_lag(
    events: Sequence[Mapping[str, Any]], signer: str, workers: Sequence[str], since: float
) -> float | None:
    """Seconds from the last worker's ``stopped`` to the signer's ``stopping`` (its StopInstances).

    Only changes at or after ``since`` count; ``None`` if a worker or the signer never got there.
    """
    last_stopped = []
    for worker in workers:
        stops = [t for t in state_changes(events, worker, "stopped") if t >= since]
        if not stops:
            return None
        last_stopped.append(stops[0])
    last = max(last_stopped)
    signer_stop = next((t for t in state_changes(events, signer, "stopping") if t >= last), None)
    return None if signer_stop is None else signer_stop - last


def orchestration_calls(
    calls: Iterable[Mapping[str, Any]], since: float, until: float
) -> list[Mapping[str, Any]]:
    """The calls made by Airflow code (a caller is named) in ``[since, until)``."""
    return [call for call in calls if call.get("caller") is not None and since <= call["t"] < until]


def by_operation(calls: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """``{operation: count}``, most frequent first (REST calls such as S3 count as their service)."""
    counts = Counter(call.get("operation") or call.get("service") or "?" for call in calls)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def by_caller(calls: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = Counter(str(call.get("caller")) for call in calls)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def probe_counts(
    calls: Sequence[Mapping[str, Any]], probes: Sequence[Mapping[str, Any]]
) -> dict[str, dict[str, int]]:
    """For each probe window ``{probe, started, ended}``: the orchestration calls made in it, by operation."""
    return {
        probe["probe"]: by_operation(orchestration_calls(calls, probe["started"], probe["ended"] + 1e-3))
        for probe in probes
    }


@dataclass(frozen=True)
class SlotSamples:
    """Worker slots held over a run, from task-instance states sampled at times ``t``."""

    peak_running: int
    running_seconds: float
    deferred_seconds: float
    # Running task-seconds by step (the task id's last part: ``w001.run_agent`` -> ``run_agent``).
    running_by_step: dict[str, float]
    running_by_task: dict[str, float]


def integrate_states(samples: Sequence[tuple[float, Mapping[str, str | None]]]) -> SlotSamples:
    """``[(t, {task_id: state})]`` → peak ``running`` tasks, and task-seconds running and deferred.

    Each sample holds until the next one (a step function); the last sample counts for nothing.
    """
    peak = 0
    running = deferred = 0.0
    by_step: dict[str, float] = {}
    by_task: dict[str, float] = {}
    for index, (moment, states) in enumerate(samples):
        count = sum(1 for state in states.values() if state == "running")
        peak = max(peak, count)
        if index + 1 < len(samples):
            width = samples[index + 1][0] - moment
            running += count * width
            deferred += sum(1 for state in states.values() if state == "deferred") * width
            for task_id, state in states.items():
                if state == "running":
                    step = step_of(task_id)
                    by_step[step] = by_step.get(step, 0.0) + width
                    by_task[task_id] = by_task.get(task_id, 0.0) + width
    return SlotSamples(peak, running, deferred, dict(sorted(by_step.items())), by_task)


def step_of(task_id: str) -> str:
    """``w001.run_agent`` → ``run_agent``: the step of a task in a role's task group."""
    return task_id.rsplit(".", 1)[-1]


def slot_seconds_by_task(
    sampled: Mapping[str, float], durations: Mapping[str, float | None], deferred: set[str]
) -> dict[str, float]:
    """Each task's worker-slot time: its whole duration if it never deferred (it held its slot from
    start to end), else the running time the samples saw (its slot was free while deferred)."""
    seconds = {}
    for task_id in set(sampled) | set(durations):
        duration = durations.get(task_id)
        if task_id not in deferred and duration is not None:
            seconds[task_id] = duration
        elif task_id in sampled:
            seconds[task_id] = sampled[task_id]
    return seconds
