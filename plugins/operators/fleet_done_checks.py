"""Clear-safe role steps: a step of a role whose run date is already complete does nothing.

A person may clear any task of ``fleet_daily`` at any time (the UI's Clear, with or without
upstream and downstream), and Airflow then runs it again. Each step that would boot, wait for or
command a worker first reads the agent's tags (one DescribeInstances): when an instance of the
role says ``succeeded`` for the run date, the step skips, naming the instance and the jobs'
outcomes, so nothing is booted or run again; its downstream skips with it. The run's ``force``
param turns the check off, as it does for ``skip_if_done``.

The signer's start asks the same of every role in the run: it boots only when some role still
has work for the date.
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
    """Raise ``AirflowSkipException`` when an instance in ``views`` completed ``run_date``.

    :param step: what the step would have done, for the message ("boot", "send the agent")
    """
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
    """Raise ``AirflowSkipException`` when every role of the run already completed ``run_date``.

    :param roles: ``{role: its instance or candidates}``; the run's ``roles`` param narrows it
    :param what: what would not be needed, for the message ("the signer")
    """
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
