"""What one DAG run did to the simulated fleet, per role: the numbers `make demo` prints.

Built from plain data (the run's task states, the simulator's timeline of state changes, the
agents' state files and the demo jobs' own log), so it can be tested without running anything.
Times are Unix seconds; a run's *window* is ``[since, until]``: what happened during that run.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
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
    result: RunResult  # the run as Airflow reports it
    run_date: str
    roles: tuple[RoleOutcome, ...]
    signer_id: str
    signer_boots: int
    signer_lag: float | None  # last worker stopped -> signer stopping
    since: float  # the run's window
    until: float
    triggered: str = ""  # how the run was triggered (trigger_plan.Trigger.how, and run_after)

    @property
    def failed_tasks(self) -> tuple[str, ...]:
        return tuple(sorted(t for t, s in self.result.states().items() if s in FAILED_STATES))

    @property
    def dag_run_date(self) -> str | None:
        """The run date the DAG rendered into its tasks."""
        return self.result.rendered_run_date()

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
        # With candidates, the one that worked is the last to reach running (others may have
        # booted and fallen over a capacity error).
        running = _events(window, instance_ids, "running")
        worked = running[-1]["instance_id"] if running else instance_ids[0]
        agent = agent_states.get(worked) or {}
        jobs = _jobs(agent, since) if agent.get("date") == run_date else ()
        outcomes.append(
            RoleOutcome(
                role=role,
                instance_id=worked,
                state=_role_state(task_states, role, run_date, result.conf.get("roles")),
                boots=len(_events(window, instance_ids, "pending")),
                executions=sum(job_starts.get(iid, 0) for iid in instance_ids),
                jobs=jobs,
                idle_seconds=idle_seconds(
                    window, worked, max((j.ended for j in jobs if j.ended), default=None)
                ),
            )
        )
    worker_stops = _events(window, [iid for ids in roles.values() for iid in ids], "stopped")
    signer_stops = _events(window, [signer_id], "stopping")
    lag = None
    if worker_stops and signer_stops:
        lag = round(signer_stops[0]["t"] - max(e["t"] for e in worker_stops), 2)
    return RunSummary(
        result=result,
        run_date=run_date,
        roles=tuple(outcomes),
        signer_id=signer_id,
        signer_boots=len(_events(window, [signer_id], "pending")),
        signer_lag=lag,
        since=since,
        until=until,
        triggered=triggered,
    )


def _events(events: Sequence[Mapping[str, Any]], instance_ids: Collection[str], to: str) -> list[Any]:
    """The events (in order) of those instances' changes to the state ``to``."""
    return [e for e in events if e["instance_id"] in instance_ids and e["to"] == to]


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
    stops = [e["t"] for e in _events(events, [instance_id], "stopping") if e["t"] >= last_job_end]
    return round(stops[0] - last_job_end, 2) if stops else None


def render(summary: RunSummary, title: str) -> str:
    """The text `make demo` prints for one run."""
    run = summary.result
    mismatch = f" (but the DAG ran {summary.dag_run_date})" if summary.date_mismatch else ""
    lines = [
        f"== {title}: run {run.run_id}, run date {summary.run_date}{mismatch}: {run.state.upper()}"
        + (f" in {run.wall_seconds:.1f} s" if run.wall_seconds is not None else ""),
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
    lag = "n/a" if summary.signer_lag is None else f"{summary.signer_lag:.2f} s after the last worker stopped"
    lines.append(f"  {'signer':<12} {summary.signer_id}  booted {summary.signer_boots}x, stop lag {lag}")
    idles = [role.idle_seconds for role in summary.roles if role.idle_seconds is not None]
    if idles:
        lines.append(
            f"  worker idle: median {median(idles):.2f} s, max {max(idles):.2f} s (last job end -> stopping)"
        )
    if summary.failed_tasks:
        lines.append(f"  failed tasks: {', '.join(summary.failed_tasks)}")
    return "\n".join(lines)
