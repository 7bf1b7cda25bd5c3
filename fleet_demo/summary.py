"""What one DAG run did to the simulated fleet, per role: the numbers `make demo` prints.

Built from plain data (the run's task states, the simulator's timeline of state changes, the
agents' state files and the demo jobs' own log), so it can be tested without running anything.
Times are Unix seconds; a run's *window* is ``[since, until]``: what happened during that run.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from airflow_harness import RunResult
from fleet_sim.timeline import parse_iso

# Task states that mean a role's group did not do its work.
FAILED_STATES = ("failed", "upstream_failed")


@dataclass(frozen=True)
class JobOutcome:
    name: str
    status: str  # the agent's: succeeded, failed, timed_out, interrupted, skipped, ...
    exit_code: int | None
    seconds: float | None
    started: float | None = None  # Unix time
    ended: float | None = None  # Unix time


@dataclass(frozen=True)
class RoleOutcome:
    role: str
    instance_id: str  # the instance that worked (for candidates: the one that booted)
    state: str  # "succeeded", "failed" or "skipped (done for <date>)"
    boots: int  # transitions to pending during the run: a VM booted
    executions: int  # demo job starts during the run: a job really ran
    jobs: tuple[JobOutcome, ...] = ()
    idle_seconds: float | None = None  # last job end -> instance stopping (billing ends)


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    run_date: str
    state: str
    wall_seconds: float | None
    roles: tuple[RoleOutcome, ...]
    signer_id: str
    signer_boots: int
    signer_lag: float | None  # last worker stopped -> signer stopping
    failed_tasks: tuple[str, ...] = field(default_factory=tuple)
    triggered: str = ""  # how the run was triggered (trigger_plan.Trigger.how, and run_after)
    dag_run_date: str | None = None  # the run date the DAG rendered into its tasks

    @property
    def ok(self) -> bool:
        return self.state == "success"

    @property
    def date_mismatch(self) -> bool:
        """The DAG ran another date than the one asked for (say, a trigger made past midnight)."""
        return self.dag_run_date is not None and self.dag_run_date != self.run_date


def summarize(
    result: RunResult,
    *,
    run_date: str,
    roles: Mapping[str, Sequence[str]],
    signer_id: str,
    state_events: Sequence[Mapping[str, Any]],
    agent_states: Mapping[str, Mapping[str, Any] | None],
    job_starts: Mapping[str, int],
    since: float,
    until: float,
    triggered: str = "",
) -> RunSummary:
    """One run's summary.

    :param roles: ``{role: [instance ids]}`` (several when the role has candidates)
    :param state_events: the simulator's ``state`` events (``t``, ``instance_id``, ``to``), any window
    :param agent_states: each instance's latest agent state file (``None``: the agent never ran)
    :param job_starts: ``{instance_id: demo job starts during the run}``
    :param triggered: how the run was triggered, for the reader
    """
    task_states = result.states()
    window = [e for e in state_events if since <= e["t"] <= until]
    outcomes = []
    for role, instance_ids in roles.items():
        boots = {iid: _count(window, iid, "pending") for iid in instance_ids}
        # With candidates, the one that worked is the last to reach running (others may have
        # booted and fallen over a capacity error).
        running = [
            e["instance_id"] for e in window if e["instance_id"] in instance_ids and e["to"] == "running"
        ]
        worked = running[-1] if running else instance_ids[0]
        agent = agent_states.get(worked) or {}
        jobs = _jobs(agent, since) if agent.get("date") == run_date else ()
        outcomes.append(
            RoleOutcome(
                role=role,
                instance_id=worked,
                state=_role_state(task_states, role, run_date, result.conf.get("roles")),
                boots=sum(boots.values()),
                executions=sum(job_starts.get(iid, 0) for iid in instance_ids),
                jobs=jobs,
                idle_seconds=idle_seconds(
                    window, worked, max((j.ended for j in jobs if j.ended), default=None)
                ),
            )
        )
    worker_ids = {iid for ids in roles.values() for iid in ids}
    last_worker_stop = max(
        (e["t"] for e in window if e["instance_id"] in worker_ids and e["to"] == "stopped"), default=None
    )
    signer_stop = next(
        (e["t"] for e in window if e["instance_id"] == signer_id and e["to"] == "stopping"), None
    )
    lag = (
        None if last_worker_stop is None or signer_stop is None else round(signer_stop - last_worker_stop, 2)
    )
    return RunSummary(
        run_id=result.run_id,
        run_date=run_date,
        state=result.state,
        wall_seconds=result.wall_seconds,
        roles=tuple(outcomes),
        signer_id=signer_id,
        signer_boots=_count(window, signer_id, "pending"),
        signer_lag=lag,
        failed_tasks=tuple(sorted(t for t, s in task_states.items() if s in FAILED_STATES)),
        triggered=triggered,
        dag_run_date=result.rendered_run_date(),
    )


def _count(events: Sequence[Mapping[str, Any]], instance_id: str, to: str) -> int:
    return sum(1 for e in events if e["instance_id"] == instance_id and e["to"] == to)


def _role_state(
    task_states: Mapping[str, str | None], role: str, run_date: str, selected: Collection[str] | None
) -> str:
    report = task_states.get(f"{role}.report")
    if report == "success":
        return "succeeded"
    if report == "skipped" and selected is not None and role not in selected:
        return "skipped (not in this run's roles)"
    if report == "skipped" and task_states.get(f"{role}.skip_if_done") == "skipped":
        return f"skipped (done for {run_date})"
    return "failed"


def _jobs(agent: Mapping[str, Any], since: float) -> tuple[JobOutcome, ...]:
    """The jobs of the agent's state file that ended during the run (older ones were not this run's)."""
    outcomes = []
    for name, job in (agent.get("jobs") or {}).items():
        started, ended = parse_iso(job.get("started_at")), parse_iso(job.get("ended_at"))
        if ended is not None and ended < since:
            continue
        seconds = round(ended - started, 2) if started is not None and ended is not None else None
        outcomes.append(
            JobOutcome(name, str(job.get("status")), job.get("exit_code"), seconds, started, ended)
        )
    return tuple(outcomes)


def idle_seconds(
    events: Sequence[Mapping[str, Any]], instance_id: str, last_job_end: float | None
) -> float | None:
    """Last job end -> the instance's first ``stopping`` after it (``None`` if either is missing)."""
    if last_job_end is None:
        return None
    stop = next(
        (
            e["t"]
            for e in events
            if e["instance_id"] == instance_id and e["to"] == "stopping" and e["t"] >= last_job_end
        ),
        None,
    )
    return None if stop is None else round(stop - last_job_end, 2)


def render(summary: RunSummary, title: str) -> str:
    """The text `make demo` prints for one run."""
    mismatch = f" (but the DAG ran {summary.dag_run_date})" if summary.date_mismatch else ""
    lines = [
        f"== {title}: run {summary.run_id}, run date {summary.run_date}{mismatch}: {summary.state.upper()}"
        + (f" in {summary.wall_seconds:.1f} s" if summary.wall_seconds is not None else ""),
    ]
    if summary.triggered:
        lines.append(f"  triggered {summary.triggered}")
    for role in summary.roles:
        idle = f", idle {role.idle_seconds:.2f} s" if role.idle_seconds is not None else ""
        lines.append(
            f"  {role.role:<12} {role.instance_id}  {role.state}; booted {role.boots}x, "
            f"{role.executions} job run(s){idle}"
        )
        for job in role.jobs:
            code = "-" if job.exit_code is None else str(job.exit_code)
            took = "-" if job.seconds is None else f"{job.seconds:.1f} s"
            lines.append(f"      {job.name:<24} {job.status:<11} exit {code:>3}  {took}")
    lag = (
        f"{summary.signer_lag:.2f} s after the last worker stopped"
        if summary.signer_lag is not None
        else "n/a"
    )
    lines.append(f"  {'signer':<12} {summary.signer_id}  booted {summary.signer_boots}x, stop lag {lag}")
    idles = [role.idle_seconds for role in summary.roles if role.idle_seconds is not None]
    if idles:
        lines.append(
            f"  worker idle: median {median(idles):.2f} s, max {max(idles):.2f} s (last job end -> stopping)"
        )
    if summary.failed_tasks:
        lines.append(f"  failed tasks: {', '.join(summary.failed_tasks)}")
    return "\n".join(lines)
