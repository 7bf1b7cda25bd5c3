"""fleet_daily end to end with dag.test(): real tasks and triggers, moto for EC2 and S3, SSM emulated.

dag.test() runs every task in this process and runs each deferral's trigger inline, so moto's
mock_aws() covers every call. The emulated SendCommand plays the agent (fleet_dag_testing.py):
it writes the agent's final tags for the run date it was given, uploads the job logs and stops the
instance, so the wait for ``stopped`` and the report see what a real agent leaves behind.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from unittest import mock

import boto3
import pendulum
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSensorTimeout
from airflow.sdk import DagRunState, TaskInstanceState
from fleet_dag.builder import agent_spec, build_dag
from fleet_dag.config import CONFIG_ENV_VAR, load_config
from fleet_dag_testing import SsmEmulator, fleet_dict, write_yaml
from fleet_testing import role_named, states
from moto import mock_aws
from operators.fleet_ec2_operators import FleetStartInstancesOperator
from operators.fleet_notifiers import FleetLogNotifier
from operators.fleet_turn_sensors import FleetWaitTurnSensor

from instance_agent.protocol import AgentReport

AMI = "ami-12c6146b"
CHAIN = ["skip_if_done", "start", "wait_running", "wait_ssm_online", "run_agent", "wait_stopped", "report"]


def _launch_stopped(ec2, count: int) -> list[str]:
    ids = [
        i["InstanceId"] for i in ec2.run_instances(ImageId=AMI, MinCount=count, MaxCount=count)["Instances"]
    ]
    ec2.stop_instances(InstanceIds=ids)
    return ids


def _role(name: str, instance: str, jobs: list[str]) -> dict:
    return {
        "name": name,
        "instance": instance,
        "max_runtime": "10m",
        "heartbeat_grace": "5m",
        "jobs": [
            {
                "name": job,
                "argv": ["/root/defilib/venv/bin/python", f"{job}.py"],
                "cwd": "/root/defilib",
                "timeout": "5m",
            }
            for job in jobs
        ],
    }


@pytest.fixture
def aws(monkeypatch):
    emulator = SsmEmulator(signer="").install(monkeypatch)
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="fleet-logs")
        yield emulator, ec2


def _fleet(tmp_path, monkeypatch, signer: str, roles: list[dict]):
    """A small fleet polling every second, selected through FLEET_CONFIG (dag.test re-parses dags/)."""
    data = fleet_dict(
        signer={"instance": signer},
        roles=roles,
        poll_interval="1s",
        boot_timeout="30s",
        s3_log_prefix="s3://fleet-logs/agent",
    )
    path = write_yaml(tmp_path / "fleet.yaml", data)
    monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
    config = load_config()
    dag = build_dag(config)
    # Airflow 3.3.2's dag.test() crashes at the end of a run of a DAG with a deadline
    # (apache/airflow#73428: its in-memory round trip leaves serialized alerts where the run
    # expects deadline_alert ids). The deadline itself is checked in test_fleet_daily_dag.py.
    dag.deadline = None
    return config, dag


def _tis(dag_run):
    return {ti.task_id: ti for ti in dag_run.get_task_instances()}


class TestFleetDailyRun:
    def test_scheduled_run_runs_each_role_in_chain_order_and_stops_the_signer(
        self, aws, tmp_path, monkeypatch, airflow_db
    ):
        emulator, ec2 = aws
        signer, worker = _launch_stopped(ec2, 2)
        emulator.signer = signer
        config, dag = _fleet(
            tmp_path, monkeypatch, signer, [_role("tasks", worker, ["backoffice", "shield"])]
        )

        dag_run = dag.test(logical_date=pendulum.datetime(2026, 11, 23, tz="UTC"))

        assert dag_run.state == DagRunState.SUCCESS
        tis = _tis(dag_run)
        assert {task_id: ti.state for task_id, ti in tis.items()} == dict.fromkeys(
            tis, TaskInstanceState.SUCCESS
        )
        chain = [f"tasks.{step}" for step in CHAIN]
        # The signer boots once a role has work, and before any agent is called.
        for earlier, later in [
            *itertools.pairwise(chain),
            ("tasks.skip_if_done", "start_signer"),
            ("start_signer", "tasks.run_agent"),
            ("tasks.wait_stopped", "stop_signer"),
        ]:
            assert tis[earlier].end_date <= tis[later].start_date, f"{later} started before {earlier} ended"

        # The agent got the run's date, its role and the role's job spec, once the signer ran.
        (sent,) = emulator.sent
        assert sent["request"]["InstanceIds"] == [worker]
        assert sent["request"]["Comment"] == "fleet_daily tasks 2026-11-23"
        assert (sent["options"]["role"], sent["options"]["date"], sent["force"]) == (
            "tasks",
            "2026-11-23",
            False,
        )
        assert sent["spec"] == agent_spec(config, role_named(config, "tasks"))
        assert sent["signer_state"] == "running"

        ops = emulator.calls
        starts = [i for i, (name, params) in enumerate(ops) if name == "StartInstances"]
        assert sorted(ops[i][1]["InstanceIds"] for i in starts) == sorted([[signer], [worker]])
        send = next(i for i, (name, _) in enumerate(ops) if name == "SendCommand")
        assert max(starts) < send
        stops = [params["InstanceIds"] for name, params in ops if name == "StopInstances"]
        assert stops[-1] == [signer]

        assert states(ec2, [signer, worker]) == {signer: "stopped", worker: "stopped"}
        assert tis["tasks.report"].xcom_pull(task_ids="tasks.report") == {
            job: {"instance_id": worker, "outcome": 0, "duration_seconds": 7}
            for job in ("backoffice", "shield")
        }

    def test_a_failed_job_fails_its_role_a_done_role_is_skipped_and_the_signer_still_stops(
        self, aws, tmp_path, monkeypatch, airflow_db
    ):
        emulator, ec2 = aws
        signer, tasks_vm, uniswap_vm = _launch_stopped(ec2, 3)
        emulator.signer = signer
        emulator.exit_codes = {"shield": 3}
        # uniswap already completed the run date (a manual run after the scheduled one).
        done = AgentReport(role="uniswap", run_date="2026-11-20", state="succeeded", jobs={"uniswap": 0})
        ec2.create_tags(
            Resources=[uniswap_vm], Tags=[{"Key": k, "Value": v} for k, v in done.to_tags().items()]
        )
        _, dag = _fleet(
            tmp_path,
            monkeypatch,
            signer,
            [_role("tasks", tasks_vm, ["backoffice", "shield"]), _role("uniswap", uniswap_vm, ["uniswap"])],
        )
        # dag.test() hands failure callbacks the serialized DAG, on which a notifier cannot render
        # its templates (the DAG processor gives them the real one): watch the call itself.
        notify = mock.patch.object(FleetLogNotifier, "__call__", autospec=True)

        with notify as notified:
            # A manual run without a logical date: its run date is run_after's.
            dag_run = dag.test(
                logical_date=None, run_after=datetime.fromisoformat("2026-11-20T15:00:00+00:00")
            )

        assert dag_run.state == DagRunState.FAILED
        tis = _tis(dag_run)
        assert tis["tasks.report"].state == TaskInstanceState.FAILED
        assert {step: tis[f"uniswap.{step}"].state for step in CHAIN} == dict.fromkeys(
            CHAIN, TaskInstanceState.SKIPPED
        )
        # The teardown ran although a role failed: the signer is not left running.
        assert tis["stop_signer"].state == TaskInstanceState.SUCCESS
        assert states(ec2, [signer, tasks_vm, uniswap_vm]) == dict.fromkeys(
            [signer, tasks_vm, uniswap_vm], "stopped"
        )
        # The skipped role's VM was never booted, and only the other role's agent was called.
        started = [params["InstanceIds"] for name, params in emulator.calls if name == "StartInstances"]
        assert sorted(started) == sorted([[signer], [tasks_vm]])
        assert [(s["options"]["role"], s["options"]["date"]) for s in emulator.sent] == [
            ("tasks", "2026-11-20")
        ]
        # The DAG's failure callback is the configured notifier (the default: the log).
        (call,) = notified.call_args_list
        notifier, context = call.args
        assert notifier.message == "fleet_daily failed"
        assert context["reason"] == "task_failure"


class TestTheSignersStopFollowsTheRunsTurn:
    """``stop_signer`` is the teardown of ``start_signer`` and ``wait_turn``: it stops the signer
    whenever the run had its turn, and never for a run that did not (the signer is another's)."""

    def test_a_failed_start_signer_still_gets_the_signer_stopped(
        self, aws, tmp_path, monkeypatch, airflow_db
    ):
        emulator, ec2 = aws
        signer, worker = _launch_stopped(ec2, 2)
        emulator.signer = signer
        _, dag = _fleet(tmp_path, monkeypatch, signer, [_role("tasks", worker, ["backoffice"])])
        started = FleetStartInstancesOperator.execute_complete

        def started_then_fail(self, context, event=None, instance_ids=None):
            result = started(self, context, event, instance_ids)
            if self.task_id == "start_signer":  # as when a check after StartInstances failed
                raise AirflowFailException("the signer's start failed after StartInstances")
            return result

        monkeypatch.setattr(FleetStartInstancesOperator, "execute_complete", started_then_fail)
        with mock.patch.object(FleetLogNotifier, "__call__", autospec=True):
            dag_run = dag.test(logical_date=pendulum.datetime(2026, 11, 23, tz="UTC"))

        tis = _tis(dag_run)
        assert (tis["wait_turn"].state, tis["start_signer"].state) == (
            TaskInstanceState.SUCCESS,
            TaskInstanceState.FAILED,
        )
        assert tis["stop_signer"].state == TaskInstanceState.SUCCESS
        assert states(ec2, [signer])[signer] == "stopped"

    def test_a_run_that_never_got_its_turn_leaves_the_signer_alone(
        self, aws, tmp_path, monkeypatch, airflow_db
    ):
        emulator, ec2 = aws
        signer, worker = _launch_stopped(ec2, 2)
        ec2.start_instances(InstanceIds=[signer])  # up for the run that holds the fleet
        emulator.signer = signer
        _, dag = _fleet(tmp_path, monkeypatch, signer, [_role("tasks", worker, ["backoffice"])])

        def no_turn(self, context):
            raise AirflowSensorTimeout("run X did not get its turn on the fleet by ...")

        monkeypatch.setattr(FleetWaitTurnSensor, "execute", no_turn)
        before = len(emulator.calls)
        with mock.patch.object(FleetLogNotifier, "__call__", autospec=True):
            dag_run = dag.test(logical_date=pendulum.datetime(2026, 11, 23, tz="UTC"))

        tis = _tis(dag_run)
        assert dag_run.state == DagRunState.FAILED
        assert tis["wait_turn"].state == TaskInstanceState.FAILED
        assert tis["stop_signer"].state == TaskInstanceState.UPSTREAM_FAILED
        assert [
            name for name, _ in emulator.calls[before:] if name in ("StartInstances", "StopInstances")
        ] == []
        assert states(ec2, [signer, worker]) == {signer: "running", worker: "stopped"}
