"""The two role-level steps of the daily DAG that read the agent's report from instance tags.

- :class:`FleetSkipIfDoneOperator`: before a role's VM is booted, skip the role when its agent
  already reported the run date complete (layer 2 of the once-per-day guarantee).
- :class:`FleetRoleReportOperator`: after the VM stopped, print each job's exit code, duration
  and log tail in the task log, and fail when a job did not succeed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowSkipException
from botocore.exceptions import BotoCoreError, ClientError

from instance_agent.protocol import STATE_SUCCEEDED, AgentReport
from operators.fleet_aws import (
    FleetError,
    describe_instances,
    normalize_instance_ids,
    with_default_retries,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

# Parameters of the DAG run these operators read (the DAG's Params define and validate them).
FORCE_PARAM = "force"
ROLES_PARAM = "roles"


class FleetSkipIfDoneOperator(AwsBaseOperator[EC2Hook]):
    """Skip a role whose agent already completed this run date, so its VM is never booted.

    One DescribeInstances reads the agent's tags (``fleet:run-date``, ``fleet:state``). The
    role is skipped (and with it, through the trigger rules, every later step of the role) when
    any of its instances says ``succeeded`` for ``run_date``, or when the run's ``roles``
    parameter leaves the role out. The run's ``force`` parameter overrides the first check, loudly.

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

    @property
    def _hook_parameters(self) -> dict[str, Any]:
        return {
            **super()._hook_parameters,
            "config": with_default_retries(self.botocore_config, self.aws_conn_id),
            "api_type": "client_type",
        }

    def execute(self, context: Context) -> dict[str, Any]:
        params = context.get("params") or {}
        selected = params.get(ROLES_PARAM)
        if selected and self.role not in selected:
            raise AirflowSkipException(f"Role {self.role} is not among this run's roles {selected}")
        force = bool(params.get(FORCE_PARAM, False))
        ids = normalize_instance_ids(self.instance_ids)
        views = describe_instances(self.hook.conn, ids)
        done = {
            view.instance_id: view.report
            for view in views.values()
            if view.report is not None and view.report.is_complete_for(self.run_date)
        }
        if done and not force:
            instance_id, report = next(iter(done.items()))
            raise AirflowSkipException(
                f"Role {self.role} already completed {self.run_date} on {instance_id} "
                f"(agent jobs: {_outcomes(report)}); its VM is not booted. "
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


class FleetRoleReportOperator(AwsBaseOperator[S3Hook]):
    """Print a role's outcome from its agent's final tags and logs; fail if a job did not succeed.

    :param role: the worker role's name
    :param instances: the final ``{instance_id: {"state", "tags"}}`` of the wait for ``stopped``
        (templated; usually that sensor's XCom)
    :param run_date: the run date the report must be about (templated)
    :param job_names: the role's jobs, in config order
    :param s3_log_prefix: where the agent uploaded the job logs (``s3://bucket/prefix``), if anywhere
    :param log_tail_lines: how many last lines of each job's log to print
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

    @property
    def _hook_parameters(self) -> dict[str, Any]:
        return {
            **super()._hook_parameters,
            "config": with_default_retries(self.botocore_config, self.aws_conn_id),
        }

    def execute(self, context: Context) -> dict[str, Any]:
        if not isinstance(self.instances, Mapping) or not self.instances:
            raise FleetError(f"Role {self.role}: no final instance states to report, got {self.instances!r}")
        summary: dict[str, Any] = {}
        problems: list[str] = []
        for instance_id, info in self.instances.items():
            report = AgentReport.from_tags(info.get("tags") or {})
            if report is None or report.run_date != self.run_date:
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
                if outcome != 0 and outcome != "skipped":
                    problems.append(f"job {job} on {instance_id} " + _failure(outcome))
            if report.state != STATE_SUCCEEDED and not problems:
                problems.append(f"the agent on {instance_id} ended {report.state}")
        if problems:
            raise FleetError(f"Role {self.role} failed for {self.run_date}: " + "; ".join(problems))
        return summary

    def _log_tail(self, job: str) -> None:
        if not self.s3_log_prefix:
            return
        bucket, _, prefix = self.s3_log_prefix.removeprefix("s3://").partition("/")
        key = "/".join(part for part in (prefix.strip("/"), self.run_date, self.role, f"{job}.log") if part)
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


def _outcomes(report: AgentReport | None) -> str:
    if report is None or not report.jobs:
        return "none reported"
    return ", ".join(f"{job}={outcome}" for job, outcome in report.jobs.items())


def _summary(report: AgentReport | None) -> str:
    if report is None:
        return "no agent report"
    return f"agent {report.state} for {report.run_date}"
