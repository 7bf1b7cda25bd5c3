"""The role-level steps of the daily DAG, against moto: skip-if-done before boot, the report after.

Both read what the agent wrote on its instance's tags (instance_agent.protocol).
"""

from __future__ import annotations

import boto3
import pytest
from airflow.providers.common.compat.sdk import AirflowSkipException
from fleet_operator_testing import launch, text_of
from operators.fleet_aws import FleetError
from operators.fleet_role_operators import FleetRoleReportOperator, FleetSkipIfDoneOperator

from instance_agent.protocol import AgentReport

RUN_DATE = "2026-11-23"
JOBS = ["backoffice", "uniswap2", "hyperliquid", "shield"]
S3_PREFIX = "s3://fleet-logs/agent"


def report_tags(run_date=RUN_DATE, state="succeeded", jobs=None, durations=None) -> dict[str, str]:
    jobs = dict.fromkeys(JOBS, 0) if jobs is None else jobs
    return AgentReport(
        role="tasks",
        run_date=run_date,
        state=state,
        progress=f"{len(jobs)}/{len(jobs)}",
        jobs=jobs,
        durations=durations if durations is not None else dict.fromkeys(jobs, 95),
    ).to_tags()


def skip_if_done(instance_ids, run_date=RUN_DATE) -> FleetSkipIfDoneOperator:
    return FleetSkipIfDoneOperator(
        task_id="skip_if_done", role="tasks", instance_ids=instance_ids, run_date=run_date
    )


def params(force=False, roles=("tasks", "hyperliquid", "uniswap")):
    return {"params": {"force": force, "roles": list(roles)}}


class TestFleetSkipIfDoneOperator:
    def test_template_fields(self):
        assert set(FleetSkipIfDoneOperator.template_fields) == {
            "aws_conn_id",
            "region_name",
            "verify",
            "instance_ids",
            "run_date",
        }

    def test_done_for_the_date_skips_naming_instance_and_date(self, api, client):
        ids = launch(client, 1, state="stopped", tags=report_tags())
        api.reset()

        with pytest.raises(AirflowSkipException) as skipped:
            skip_if_done(ids).execute(params())

        message = str(skipped.value)
        assert f"Role tasks already completed {RUN_DATE} on {ids[0]}" in message
        assert "backoffice=0, uniswap2=0, hyperliquid=0, shield=0" in message
        assert "force=true" in message
        # One read for the role, and the VM is never booted.
        assert api.count("DescribeInstances") == 1
        assert api.count("StartInstances") == 0

    @pytest.mark.parametrize(
        "tags",
        [
            pytest.param({}, id="never-ran"),
            pytest.param(report_tags(run_date="2026-11-22"), id="done-yesterday"),
            pytest.param(
                report_tags(state="failed", jobs={"backoffice": 0, "uniswap2": 3}), id="failed-today"
            ),
            pytest.param(
                report_tags(state="interrupted", jobs={"backoffice": "interrupted"}), id="interrupted"
            ),
            pytest.param(report_tags(state="running", jobs={"backoffice": "running"}), id="still-running"),
        ],
    )
    def test_not_done_runs(self, api, client, task_log, tags):
        ids = launch(client, 1, state="stopped", tags=tags or None)

        result = skip_if_done(ids).execute(params())

        assert result == {"run_date": RUN_DATE, "force": False}
        assert f"Role tasks has not completed {RUN_DATE} yet: {ids[0]} stopped, " in text_of(task_log, "info")

    def test_force_runs_a_done_role_with_a_loud_warning(self, api, client, task_log):
        ids = launch(client, 1, state="stopped", tags=report_tags())

        result = skip_if_done(ids).execute(params(force=True))

        assert result == {"run_date": RUN_DATE, "force": True}
        assert (
            f"FORCE: role tasks already completed {RUN_DATE} on {ids[0]}, running every job again as asked"
            in text_of(task_log, "warning")
        )

    def test_role_left_out_of_the_run_is_skipped_without_any_call(self, api, client):
        ids = launch(client, 1, state="stopped")
        api.reset()

        with pytest.raises(
            AirflowSkipException, match=r"Role tasks is not among this run's roles \['uniswap'\]"
        ):
            skip_if_done(ids).execute(params(roles=["uniswap"]))

        assert api.calls == []

    def test_a_left_out_role_is_skipped_even_with_force(self, api, client):
        ids = launch(client, 1, state="stopped")
        with pytest.raises(AirflowSkipException, match="not among this run's roles"):
            skip_if_done(ids).execute(params(force=True, roles=["hyperliquid"]))

    def test_any_done_candidate_skips_the_slot(self, api, client):
        first = launch(client, 1, state="stopped")
        second = launch(client, 1, state="stopped", tags=report_tags())

        with pytest.raises(AirflowSkipException, match=f"completed {RUN_DATE} on {second[0]}"):
            skip_if_done([*first, *second]).execute(params())

    def test_unknown_instance_fails_naming_it(self, api, client):
        with pytest.raises(FleetError, match="i-0000000000000dead"):
            skip_if_done(["i-0000000000000dead"]).execute(params())

    def test_no_params_means_every_role_and_no_force(self, api, client):
        ids = launch(client, 1, state="stopped")
        assert skip_if_done(ids).execute({}) == {"run_date": RUN_DATE, "force": False}


def report(instances, **kwargs) -> FleetRoleReportOperator:
    kwargs.setdefault("job_names", JOBS)
    kwargs.setdefault("run_date", RUN_DATE)
    return FleetRoleReportOperator(task_id="report", role="tasks", instances=instances, **kwargs)


def stopped(tags, instance_id="i-086cd22c6d66f5cab"):
    return {instance_id: {"state": "stopped", "tags": tags}}


class TestFleetRoleReportOperator:
    def test_template_fields(self):
        assert set(FleetRoleReportOperator.template_fields) == {
            "aws_conn_id",
            "region_name",
            "verify",
            "instances",
            "run_date",
        }

    def test_success_logs_and_returns_each_jobs_exit_code_and_duration(self, task_log):
        durations = {"backoffice": 95, "uniswap2": 12, "hyperliquid": 3600, "shield": 7}
        instance = "i-086cd22c6d66f5cab"

        summary = report(stopped(report_tags(durations=durations))).execute({})

        assert summary == {
            job: {"instance_id": instance, "outcome": 0, "duration_seconds": durations[job]} for job in JOBS
        }
        log = text_of(task_log, "info")
        assert f"Role tasks on {instance}: agent succeeded, 4/4 jobs done, instance stopped" in log
        assert "  backoffice               exit code 0 after 95 s" in log
        assert "  hyperliquid              exit code 0 after 3600 s" in log

    def test_a_job_that_exited_3_fails_the_role_naming_job_and_code(self, task_log):
        tags = report_tags(
            state="failed", jobs={"backoffice": 0, "uniswap2": 3, "hyperliquid": 0, "shield": 0}
        )

        with pytest.raises(FleetError) as error:
            report(stopped(tags)).execute({})

        assert str(error.value) == (
            f"Role tasks failed for {RUN_DATE}: job uniswap2 on i-086cd22c6d66f5cab exited with code 3"
        )
        # Every job is still reported, not only up to the failure.
        assert "  shield                   exit code 0 after 95 s" in text_of(task_log)

    def test_an_interrupted_run_fails(self):
        tags = report_tags(
            state="interrupted",
            jobs={"backoffice": 0, "uniswap2": "interrupted", "hyperliquid": "skipped", "shield": "skipped"},
        )
        with pytest.raises(FleetError, match="job uniswap2 on i-086cd22c6d66f5cab ended interrupted"):
            report(stopped(tags)).execute({})

    def test_an_interrupted_agent_fails_even_when_no_job_did(self):
        tags = report_tags(
            state="interrupted",
            jobs={"backoffice": 0, "uniswap2": 0, "hyperliquid": "skipped", "shield": "skipped"},
        )
        with pytest.raises(FleetError, match="the agent on i-086cd22c6d66f5cab ended interrupted"):
            report(stopped(tags)).execute({})

    def test_tags_of_another_date_fail_naming_both_dates(self):
        with pytest.raises(FleetError) as error:
            report(stopped(report_tags(run_date="2026-11-22"))).execute({})
        assert "left a report for 2026-11-22, not one for 2026-11-23" in str(error.value)

    def test_no_agent_tags_at_all_fail(self):
        with pytest.raises(FleetError, match="left no report at all, not one for 2026-11-23"):
            report(stopped({"Name": "tasks_vm"})).execute({})

    def test_a_job_missing_from_the_report_fails(self):
        tags = report_tags(jobs={"backoffice": 0, "uniswap2": 0, "hyperliquid": 0})
        with pytest.raises(FleetError, match="job shield on i-086cd22c6d66f5cab ended not reported"):
            report(stopped(tags)).execute({})

    def test_no_instances_to_report_fails(self):
        with pytest.raises(FleetError, match="Role tasks: no final instance states to report"):
            report({}).execute({})

    def test_log_tails_come_from_the_agents_s3_layout(self, api, task_log):
        # The agent uploads <prefix>/<run date>/<role>/<job>.log (instance_agent/agent.py, reporter.py).
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="fleet-logs")
        body = "\n".join(f"backoffice line {n}" for n in range(1, 31))
        s3.put_object(Bucket="fleet-logs", Key=f"agent/{RUN_DATE}/tasks/backoffice.log", Body=body.encode())
        s3.put_object(Bucket="fleet-logs", Key="agent/2026-11-22/tasks/uniswap2.log", Body=b"yesterday")

        report(stopped(report_tags()), s3_log_prefix=S3_PREFIX + "/", log_tail_lines=3).execute({})

        info = text_of(task_log, "info")
        tail = "\n".join(f"backoffice line {n}" for n in (28, 29, 30))
        assert f"    last lines of s3://fleet-logs/agent/{RUN_DATE}/tasks/backoffice.log:\n{tail}" in info
        assert "backoffice line 27" not in info
        warnings = text_of(task_log, "warning")
        assert f"    no log at s3://fleet-logs/agent/{RUN_DATE}/tasks/uniswap2.log" in warnings
        assert "yesterday" not in info

    def test_log_tails_under_a_bucket_without_prefix(self, api, task_log):
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="fleet-logs")
        s3.put_object(Bucket="fleet-logs", Key=f"{RUN_DATE}/tasks/shield.log", Body=b"shield done\n")

        report(stopped(report_tags()), s3_log_prefix="s3://fleet-logs").execute({})

        assert f"last lines of s3://fleet-logs/{RUN_DATE}/tasks/shield.log:\nshield done" in text_of(task_log)

    def test_without_a_prefix_no_s3_call_is_made(self, monkeypatch, task_log):
        monkeypatch.setattr(
            FleetRoleReportOperator, "hook", property(lambda self: pytest.fail("S3 was called"))
        )
        report(stopped(report_tags())).execute({})
        assert "last lines of" not in text_of(task_log)
