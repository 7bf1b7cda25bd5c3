"""A DAG run as the REST API shows it: its result, whether it is moving, and why not.

Plain functions of the API's JSON (and of ``now``): a stuck run's diagnosis is tested with any
clock and without an Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL_RUN_STATES = ("success", "failed")
# Task states reached without the task ever running (a skip decided by its upstream).
_SETTLED_WITHOUT_START = ("skipped", "upstream_failed", "removed")
# How many of the scheduler's lines a stuck run's report quotes.
QUOTED_LOG_LINES = 8


@dataclass(frozen=True)
class TaskResult:
    """One task instance of a finished run, and what was seen of it while the run went on."""

    task_id: str
    state: str | None
    try_number: int
    start_date: datetime | None
    end_date: datetime | None
    # Every state polled while the run went on (``deferred`` proves the task gave up its slot).
    seen_states: tuple[str, ...] = ()
    # Whether a triggerer picked up a trigger the task deferred to.
    picked_by_triggerer: bool = False
    # The task's rendered template fields (``run_date`` of the fleet's tasks: the DAG's own).
    rendered_fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def deferred(self) -> bool:
        return "deferred" in self.seen_states


@dataclass(frozen=True)
class RunResult:
    """A finished DAG run: its state, times, and every task instance."""

    dag_id: str
    run_id: str
    run_type: str
    state: str
    logical_date: datetime | None
    run_after: datetime | None
    start_date: datetime | None
    end_date: datetime | None
    conf: dict[str, Any]
    tasks: dict[str, TaskResult] = field(default_factory=dict)

    @property
    def wall_seconds(self) -> float | None:
        """The run's wall time, first task start to run end (``None`` if either is unknown)."""
        if self.start_date is None or self.end_date is None:
            return None
        return (self.end_date - self.start_date).total_seconds()

    @property
    def run_date(self) -> str | None:
        """The day of the logical date, else of ``run_after`` (UTC, the shipped fleet's timezone)."""
        moment = self.logical_date or self.run_after
        return moment.date().isoformat() if moment else None

    def rendered_run_date(self) -> str | None:
        """The run date the DAG itself rendered into its tasks (``None`` before any rendered one)."""
        dates = {t.rendered_fields.get("run_date") for t in self.tasks.values()} - {None}
        return dates.pop() if len(dates) == 1 else None

    def states(self) -> dict[str, str | None]:
        return {task_id: task.state for task_id, task in self.tasks.items()}


def run_result(
    run: Mapping[str, Any],
    tis: Sequence[Mapping[str, Any]],
    seen: Mapping[str, Sequence[str]] | None = None,
    picked: set[str] | None = None,
) -> RunResult:
    """A :class:`RunResult` from ``GET .../dagRuns/{id}`` and its ``taskInstances``."""
    seen, picked = seen or {}, picked or set()
    tasks = {
        ti["task_id"]: TaskResult(
            task_id=ti["task_id"],
            state=ti.get("state"),
            try_number=ti.get("try_number") or 0,
            start_date=parse(ti.get("start_date")),
            end_date=parse(ti.get("end_date")),
            seen_states=tuple(seen.get(ti["task_id"], ())),
            picked_by_triggerer=ti["task_id"] in picked,
            rendered_fields=ti.get("rendered_fields") or {},
        )
        for ti in tis
    }
    return RunResult(
        dag_id=run["dag_id"],
        run_id=run["dag_run_id"],
        run_type=run.get("run_type", ""),
        state=run["state"],
        logical_date=parse(run.get("logical_date")),
        run_after=parse(run.get("run_after")),
        start_date=parse(run.get("start_date")),
        end_date=parse(run.get("end_date")),
        conf=run.get("conf") or {},
        tasks=tasks,
    )


def progressing(run: Mapping[str, Any], tis: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the run left ``queued`` and some task of it started (or settled without starting)."""
    if run.get("state") == "queued":
        return False
    return any(ti.get("start_date") or ti.get("state") in _SETTLED_WITHOUT_START for ti in tis)


def why_stuck(
    run: Mapping[str, Any],
    *,
    now: datetime,
    dag: Mapping[str, Any] | None = None,
    other_runs: Sequence[Mapping[str, Any]] = (),
    scheduler_lines: Sequence[str] = (),
) -> list[str]:
    """The reasons a run makes no progress, the scheduler's own first (empty: none found).

    ``dag`` and ``other_runs`` are the API's JSON; ``scheduler_lines`` the log since the trigger.
    """
    reasons = []
    logical = parse(run.get("logical_date"))
    # The scheduler names the logical date, not the run: "Logical date is in future: <date>".
    mentions = [run.get("dag_run_id") or "", *((str(logical), logical.isoformat()) if logical else ())]
    quoted = [line.strip() for line in scheduler_lines if any(m and m in line for m in mentions)]
    if quoted:
        reasons.append("the scheduler logged: " + " | ".join(quoted[-QUOTED_LOG_LINES:]))
    if logical is not None and logical > now:
        reasons.append(
            f"its logical date {logical.isoformat()} is in the future (now {now.isoformat()}): "
            "Airflow's scheduler starts no task of a run before its logical date"
        )
    if dag and dag.get("is_paused"):
        reasons.append(f"the DAG {dag.get('dag_id')} is paused: Airflow runs nothing of a paused DAG")
    if dag and run.get("state") == "queued":
        limit = dag.get("max_active_runs")
        active = [r["dag_run_id"] for r in other_runs if r.get("state") == "running"]
        if limit and len(active) >= limit:
            reasons.append(f"the DAG's max_active_runs={limit} is taken by run(s) {', '.join(active)}")
    return reasons


def parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
