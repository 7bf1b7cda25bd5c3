"""The role-level steps of the daily DAG that read the agent's report from instance tags:
``skip_if_done``, ``run_agent`` and ``report``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowSkipException
from botocore.exceptions import BotoCoreError, ClientError

from instance_agent import exit_codes
from instance_agent.protocol import STATE_SUCCEEDED, AgentReport, outcome_ok, s3_job_log
from operators.fleet_aws import FleetAwsTask, FleetError, FleetStateFailure, normalize_instance_ids
from operators.fleet_done_checks import FORCE_PARAM, completed, force_requested, outcomes, selected_roles
from operators.fleet_ec2 import UP_STATES, InstanceView, describe_instances
from operators.fleet_ssm_operators import FleetRunCommandOperator
from operators.fleet_turn_sensors import FleetTurnGuard

if TYPE_CHECKING:
    from airflow.sdk import Context


class FleetSkipIfDoneOperator(FleetAwsTask, AwsBaseOperator[EC2Hook]):
    """Skip a role (and through the trigger rules its later steps) when an instance's agent
    already completed ``run_date`` (unless the run's ``force`` param), or when the run's ``roles``
    param leaves the role out: its VM is never booted.

    :param role: the worker role's name
    :param instance_ids: the role's instance, or all of its candidates (templated)
    :param run_date: the run date, YYYY-MM-DD (templated)
    """

    aws_hook_class = EC2Hook
    template_fields: Sequence[str] = aws_template_fields("instance_ids", "run_date")
    ui_color = "#dddddd"

    def __init__(self, *, role: str, instance_ids: Sequence[str] | str, run_date: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.role = role
        self.instance_ids = instance_ids
        self.run_date = run_date

    def execute(self, context: Context) -> dict[str, Any]:
        selected = selected_roles(context)
        if selected is not None and self.role not in selected:
            raise AirflowSkipException(f"Role {self.role} is not among this run's roles {selected}")
        force = force_requested(context)
        ids = normalize_instance_ids(self.instance_ids)
        views = describe_instances(self.hook.conn, ids)
        done = completed(views, self.run_date)
        if done and not force:
            instance_id, report = next(iter(done.items()))
            raise AirflowSkipException(
                f"Role {self.role} already completed {self.run_date} on {instance_id} "
                f"(agent jobs: {outcomes(report)}); its VM is not booted. "
                f"Trigger the run with {FORCE_PARAM}=true to run its jobs again."
            )
        if done:
            self.log.warning(
                "FORCE: role %s already completed %s on %s, running every job again as asked",
                self.role,
                self.run_date,
                ", ".join(done),
            )
        else:
            self.log.info(
                "Role %s has not completed %s yet: %s",
                self.role,
                self.run_date,
                "; ".join(f"{v.instance_id} {v.state}, {_summary(v.report)}" for v in views.values()),
            )
        return {"run_date": self.run_date, "force": force}


class FleetRoleReportOperator(FleetAwsTask, AwsBaseOperator[S3Hook]):
    """Print a role's outcome from its agent's final tags and logs; fail if a job did not succeed.

    :param instances: the final ``{instance_id: {"state", "tags"}}`` of the wait for ``stopped``
        (templated; usually that sensor's XCom)
    :param job_names: the role's jobs, in config order
    :param s3_log_prefix: where the agent uploaded the job logs (``s3://bucket/prefix``), if anywhere
    """

    aws_hook_class = S3Hook
    template_fields: Sequence[str] = aws_template_fields("instances", "run_date")
    ui_color = "#99ccff"

    def __init__(
        self,
        *,
        role: str,
        instances: Mapping[str, Any] | str,
        run_date: str,
        job_names: Sequence[str],
        s3_log_prefix: str | None = None,
        log_tail_lines: int = 20,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.role = role
        self.instances = instances
        self.run_date = run_date
        self.job_names = list(job_names)
        self.s3_log_prefix = s3_log_prefix
        self.log_tail_lines = log_tail_lines

    def execute(self, context: Context) -> dict[str, Any]:
        if not isinstance(self.instances, Mapping) or not self.instances:
            raise FleetError(f"Role {self.role}: no final instance states to report, got {self.instances!r}")
        summary: dict[str, Any] = {}
        problems: list[str] = []
        for instance_id, info in self.instances.items():
            report = AgentReport.from_tags(info.get("tags") or {})
            if report is None or not report.is_for(self.run_date):
                seen = f"a report for {report.run_date}" if report else "no report at all"
                problems.append(f"the agent on {instance_id} left {seen}, not one for {self.run_date}")
                continue
            self.log.info(
                "Role %s on %s: agent %s, %s jobs done, instance %s",
                self.role,
                instance_id,
                report.state,
                report.progress,
                info.get("state"),
            )
            for job in self.job_names:
                outcome = report.jobs.get(job, "not reported")
                duration = report.durations.get(job)
                summary[job] = {"instance_id": instance_id, "outcome": outcome, "duration_seconds": duration}
                self.log.info(
                    "  %-24s %s%s",
                    job,
                    f"exit code {outcome}" if isinstance(outcome, int) else outcome,
                    f" after {duration} s" if duration is not None else "",
                )
                self._log_tail(job)
                if not outcome_ok(outcome):
                    problems.append(f"job {job} on {instance_id} " + _failure(outcome))
            if report.state != STATE_SUCCEEDED and not problems:
                problems.append(f"the agent on {instance_id} ended {report.state}")
        if problems:
            raise FleetError(f"Role {self.role} failed for {self.run_date}: " + "; ".join(problems))
        return summary

    def _log_tail(self, job: str) -> None:
        if not self.s3_log_prefix:
            return
        bucket, key = s3_job_log(self.s3_log_prefix, self.run_date, self.role, job)
        try:
            body = self.hook.conn.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", "replace")
        except (ClientError, BotoCoreError) as error:
            self.log.warning("    no log at s3://%s/%s: %s", bucket, key, error)
            return
        tail = "\n".join(body.splitlines()[-self.log_tail_lines :])
        self.log.info("    last lines of s3://%s/%s:\n%s", bucket, key, tail)


def _failure(outcome: object) -> str:
    if isinstance(outcome, int):
        return f"exited with code {outcome}"
    return f"ended {outcome}"


def _summary(report: AgentReport | None) -> str:
    if report is None:
        return "no agent report"
    return f"agent {report.state} for {report.run_date}"


# The agent's refusals that a retry would only repeat: bad input, an unusable state file.
FINAL_AGENT_EXITS = (exit_codes.EXIT_BAD_INPUT, exit_codes.EXIT_STATE_UNUSABLE)
SEND, WATCH, SKIP, FAIL = "send", "watch", "skip", "fail"


def agent_hand_over(
    view: InstanceView, run_date: str, *, force: bool, now: datetime, heartbeat_grace: float | None
) -> tuple[str, str]:
    """What ``run_agent`` does for one instance, and why: ``(send|watch|skip|fail, reason)``.

    First match wins: ``skip`` when the agent completed ``run_date`` (no ``force``); ``fail``
    when the instance is not up (nothing can receive a command, nor on a retry); ``watch`` when
    the agent runs ``run_date`` with a heartbeat within ``heartbeat_grace``; else ``send``.
    """
    report = view.report
    if report is not None and report.is_complete_for(run_date) and not force:
        return SKIP, f"{view.instance_id} already completed {run_date} (agent jobs: {outcomes(report)})"
    if view.state not in UP_STATES:
        agent = f"its agent's last report: {report.state} for {report.run_date}" if report else "no report"
        return FAIL, (
            f"{view.instance_id} is {view.state} and has not completed {run_date} ({agent}): no agent "
            "can be handed the jobs. Clear the role's task group (from skip_if_done) to boot it again"
        )
    age = report.heartbeat_age(now) if report is not None else None
    if (
        report is not None
        and report.is_running_for(run_date)
        and age is not None
        and (heartbeat_grace is None or age <= heartbeat_grace)
    ):
        return WATCH, f"the agent on {view.instance_id} is running {run_date} (heartbeat {age:.0f} s ago)"
    return SEND, f"{view.instance_id} is {view.state}: handing its agent the jobs of {run_date}"


class FleetRunAgentOperator(FleetTurnGuard, FleetRunCommandOperator):
    """Hand a role's jobs to ``instance_agent`` through SSM Run Command, when there is someone to
    (:func:`agent_hand_over` decides per instance). An agent exit code that a retry would only
    repeat (:data:`FINAL_AGENT_EXITS`) fails without retries, naming what the code means.

    :param run_date: the run date handed to the agent (templated)
    :param heartbeat_grace: seconds since the agent's last heartbeat within which a ``running``
        agent counts as at work
    """

    template_fields: Sequence[str] = (*FleetRunCommandOperator.template_fields, "run_date")

    def __init__(self, *, run_date: str, heartbeat_grace: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_date = run_date
        self.heartbeat_grace = heartbeat_grace

    def execute(self, context: Context) -> dict[str, Any]:
        self.hold_turn(context)
        ids = normalize_instance_ids(self.instance_ids)
        views = describe_instances(self.ec2_hook.conn, ids)
        force, now = force_requested(context), datetime.now(UTC)
        decisions = {
            iid: agent_hand_over(
                views[iid], self.run_date, force=force, now=now, heartbeat_grace=self.heartbeat_grace
            )
            for iid in ids
        }
        for action, reason in decisions.values():
            self.log.info("%s: %s", action, reason)
        failed = [reason for action, reason in decisions.values() if action == FAIL]
        if failed:
            raise FleetStateFailure("; ".join(failed))
        if all(action == SKIP for action, _ in decisions.values()):
            raise AirflowSkipException(
                "; ".join(reason for _, reason in decisions.values()) + ": nothing sent"
            )
        to_send = [iid for iid, (action, _) in decisions.items() if action == SEND]
        if not to_send:
            # Every agent is at work already (or done): the role's wait_stopped watches them.
            return {iid: {"status": action, "reason": reason} for iid, (action, reason) in decisions.items()}
        self.instance_ids = to_send
        return super().execute(context)

    def _raise_for_event(self, event: dict[str, Any] | None) -> None:
        try:
            super()._raise_for_event(event)
        except FleetError as error:
            results = (event or {}).get("results") or {}
            final = {
                iid: result.get("exit_code")
                for iid, result in results.items()
                if result.get("exit_code") in FINAL_AGENT_EXITS
            }
            if not final:
                raise
            meaning = "; ".join(
                f"the agent on {iid} exited {code}: {exit_codes.DESCRIPTIONS[code]}"
                for iid, code in final.items()
            )
            raise FleetStateFailure(f"{meaning} (a retry would be refused the same way). {error}") from error
