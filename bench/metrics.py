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


def state_changes(events: Iterable[Mapping[str, Any]], instance_id: str, to: str) -> list[float]:
    return sorted(
        event["t"]
        for event in events
        if event.get("event") == "state" and event.get("instance_id") == instance_id and event.get("to") == to
    )


def _first_at_or_after(times: list[float], since: float | None) -> float | None:
    return None if since is None else next((t for t in times if t >= since), None)


def worker_idle(
    events: Sequence[Mapping[str, Any]], instance_id: str, job_end: float | None
) -> tuple[float | None, float | None]:
    """Seconds from the job's end to the first ``stopping`` at or after it, and to the ``stopped``
    that followed; ``None`` where the worker did not get there."""
    stopping = _first_at_or_after(state_changes(events, instance_id, "stopping"), job_end)
    stopped = _first_at_or_after(state_changes(events, instance_id, "stopped"), stopping)
    return elapsed(job_end, stopping), elapsed(job_end, stopped)


def signer_lag(
    events: Sequence[Mapping[str, Any]], signer: str, workers: Sequence[str], since: float
) -> float | None:
    """Seconds from the last worker's ``stopped`` to the signer's ``stopping`` (its StopInstances).

    Only changes at or after ``since`` count; ``None`` if a worker or the signer never got there.
    """
    stops = [_first_at_or_after(state_changes(events, worker, "stopped"), since) for worker in workers]
    if None in stops:
        return None
    last = max(stops)
    return elapsed(last, _first_at_or_after(state_changes(events, signer, "stopping"), last))


def orchestration_calls(
    calls: Iterable[Mapping[str, Any]], since: float, until: float
) -> list[Mapping[str, Any]]:
    """The calls made by Airflow code (a caller is named) in ``[since, until)``."""
    return [call for call in calls if call.get("caller") is not None and since <= call["t"] < until]


def _most_first(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def by_operation(calls: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """``{operation: count}``, most frequent first (REST calls such as S3 count as their service)."""
    return _most_first(Counter(call.get("operation") or call.get("service") or "?" for call in calls))


def by_caller(calls: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    return _most_first(Counter(str(call.get("caller")) for call in calls))


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
    deferred_seconds: float
    running_by_task: dict[str, float]


def integrate_states(samples: Sequence[tuple[float, Mapping[str, str | None]]]) -> SlotSamples:
    """``[(t, {task_id: state})]`` → peak ``running`` tasks, task-seconds deferred and running by task.

    Each sample holds until the next one (a step function); the last sample counts for nothing.
    """
    peak, deferred = 0, 0.0
    by_task: Counter[str] = Counter()
    for index, (moment, states) in enumerate(samples):
        running = [task_id for task_id, state in states.items() if state == "running"]
        peak = max(peak, len(running))
        if index + 1 < len(samples):
            width = samples[index + 1][0] - moment
            deferred += sum(1 for state in states.values() if state == "deferred") * width
            by_task.update(dict.fromkeys(running, width))
    return SlotSamples(peak, deferred, dict(by_task))


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
