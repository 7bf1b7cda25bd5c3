"""Once per date: which jobs this run starts, which it skips, and why (the table of the rules
is in instance_agent/README.md). A job stopped half-way is not run again by default: it may
have done part of its work, which for these jobs can mean real orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from instance_agent.protocol import (
    JOB_FAILED,
    JOB_INTERRUPTED,
    JOB_PENDING,
    JOB_RUNNING,
    JOB_SKIPPED,
    JOB_SUCCEEDED,
    JOB_TIMED_OUT,
)
from instance_agent.spec import RunSpec
from instance_agent.state import JobRecord, RunState

RUN = "run"
SKIP = "skip"
WATCH = "watch"

LOST_PROCESS_REASON = "found running with no live process (agent crash, reboot or spot reclaim)"


@dataclass(frozen=True)
class Decision:
    job: str
    action: str  # RUN, SKIP or WATCH
    reason: str
    # The record said `running` but nothing runs it any more: record it `interrupted` first.
    lost: bool = False


def plan_jobs(
    spec: RunSpec,
    state: RunState | None,
    *,
    force: bool,
    alive: Callable[[JobRecord], bool],
) -> list[Decision]:
    decisions = []
    for job in spec.jobs:
        record = state.jobs.get(job.name) if state else None
        decisions.append(_decide(job.name, job.rerun_on_interrupt, record, force, alive))
    return decisions


def _decide(
    name: str,
    rerun_on_interrupt: bool,
    record: JobRecord | None,
    force: bool,
    alive: Callable[[JobRecord], bool],
) -> Decision:
    if record is None:
        return Decision(name, RUN, "first run for this date")
    status, lost = record.status, False
    if status == JOB_RUNNING:
        if alive(record):
            return Decision(
                name, WATCH, f"still running from an earlier agent (pid {record.pid}); never started twice"
            )
        status, lost = JOB_INTERRUPTED, True
    if status in (JOB_PENDING, JOB_SKIPPED):
        return Decision(name, RUN, f"was {status}: never started", lost)
    if force:
        return Decision(name, RUN, f"FORCED (--force): was {status}", lost)
    if status == JOB_SUCCEEDED:
        return Decision(name, SKIP, f"succeeded earlier (exit 0, ended {record.ended_at})", lost)
    if status == JOB_FAILED:
        return Decision(name, RUN, f"failed earlier (exit {record.exit_code}): running it again", lost)
    if status in (JOB_INTERRUPTED, JOB_TIMED_OUT):
        earlier = LOST_PROCESS_REASON if lost else f"was {status} earlier"
        if rerun_on_interrupt:
            return Decision(name, RUN, f"{earlier}; rerun_on_interrupt is true: running it again", lost)
        return Decision(
            name,
            SKIP,
            f"{earlier}; not re-run because rerun_on_interrupt is false "
            "(check what it did, then use --force)",
            lost,
        )
    raise ValueError(f"job {name!r}: unknown status {status!r}")  # StateStore validates statuses


def reasons_by_action(decisions: list[Decision]) -> dict[str, dict[str, str]]:
    """``{"run": {job: why}, "skip": {...}, "watch": {...}}``: the plan, as recorded and printed."""
    return {
        action: {d.job: d.reason for d in decisions if d.action == action} for action in (RUN, SKIP, WATCH)
    }
