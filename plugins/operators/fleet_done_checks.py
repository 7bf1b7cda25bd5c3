"""Clear-safe role steps: a step of a role whose run date is already complete does nothing.

A cleared step that would boot, wait for or command a worker first reads the agent's tags: when
an instance says ``succeeded`` for the run date, it skips (unless the run's ``force`` param).
The signer's start boots only when some role of the run still has work for the date.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowSkipException

from instance_agent.protocol import AgentReport
from operators.fleet_ec2 import InstanceView, describe_instances

if TYPE_CHECKING:
    from airflow.sdk import Context

# Parameters of the DAG run the fleet's steps read (the DAG's Params define and validate them).
FORCE_PARAM = "force"
ROLES_PARAM = "roles"


def force_requested(context: Context) -> bool:
    return bool((context.get("params") or {}).get(FORCE_PARAM, False))


def selected_roles(context: Context) -> Collection[str] | None:
    """The run's ``roles`` param (``None``: every role)."""
    return (context.get("params") or {}).get(ROLES_PARAM) or None


def completed(views: Mapping[str, InstanceView], run_date: str) -> dict[str, AgentReport]:
    """``{instance_id: report}`` of the instances whose agent completed ``run_date``."""
    return {
        iid: view.report
        for iid, view in views.items()
        if view.report is not None and view.report.is_complete_for(run_date)
    }


def outcomes(report: AgentReport | None) -> str:
    if report is None or not report.jobs:
        return "none reported"
    return ", ".join(f"{job}={outcome}" for job, outcome in report.jobs.items())


def skip_if_done(
    context: Context, views: Mapping[str, InstanceView], run_date: str | None, step: str
) -> None:
    """Skip when an instance in ``views`` completed ``run_date``; ``step``: what it would have done."""
    if not run_date or force_requested(context):
        return
    done = completed(views, run_date)
    if done:
        instance_id, report = next(iter(done.items()))
        raise AirflowSkipException(
            f"{instance_id} already completed {run_date} (agent jobs: {outcomes(report)}): "
            f"nothing to {step}. Trigger the run with {FORCE_PARAM}=true to run its jobs again."
        )


def skip_unless_work(
    context: Context, client: Any, roles: Mapping[str, Sequence[str]], run_date: str | None, what: str
) -> None:
    """Skip when every role of ``roles`` (``{role: instance ids}``, narrowed by the run's
    ``roles`` param) already completed ``run_date``; ``what``: what would not be needed."""
    if not run_date or not roles or force_requested(context):
        return
    selected = selected_roles(context)
    wanted = {role: ids for role, ids in roles.items() if selected is None or role in selected}
    views = describe_instances(client, [iid for ids in wanted.values() for iid in ids])
    pending = [role for role, ids in wanted.items() if not completed({i: views[i] for i in ids}, run_date)]
    if not pending:
        raise AirflowSkipException(
            f"Every role of this run ({', '.join(wanted)}) already completed {run_date}: "
            f"{what} is not needed. Trigger the run with {FORCE_PARAM}=true to run the jobs again."
        )
