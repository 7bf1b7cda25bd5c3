"""fleet_daily end to end with dag.test() on the fleet simulator: real tasks and triggers, and the
real agent running demo jobs on the simulated hosts (the ``run_fleet`` fixture of tests/dag_on_sim.py).

What the DAG sent and in which order is read from the simulator: its API call log (each call with
its request's parameters) and its timeline (each instance's states and each command sent).
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any
from unittest import mock

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSensorTimeout
from airflow.sdk import DagRunState, TaskInstanceState
from dag_on_sim import CHAIN
from fleet_dag.builder import agent_spec
from fleet_dag.config import load_config
from fleet_dag_testing import parse_agent_command
from fleet_testing import role_named
from operators.fleet_ec2_operators import FleetStartInstancesOperator
from operators.fleet_notifiers import FleetLogNotifier
from operators.fleet_turn_sensors import FleetWaitTurnSensor

from fleet_sim import demo_job
from instance_agent.protocol import AgentReport


def _jobs(*names: str, exit_codes: dict[str, int] | None = None) -> list[dict[str, Any]]:
    return [demo_job(name, seconds=0.1, exit_code=(exit_codes or {}).get(name, 0)) for name in names]


def _calls(fleet: Any, operation: str, since: int = 0) -> list[dict[str, Any]]:
    """The ``operation`` calls the simulator answered, oldest first, from the ``since``-th call on."""
    return [call for call in fleet.sim.api_calls()[since:] if call["operation"] == operation]


def _instance_ids(call: dict[str, Any]) -> list[str]:
    return [value for name, value in call["params"].items() if name.startswith("InstanceId.")]


def _sent(fleet: Any) -> list[dict[str, Any]]:
    """Each SendCommand's agent invocation (:func:`parse_agent_command`) and its ``request``."""
    return [
        {**parse_agent_command(call["params"]["Parameters"]["commands"][0]), "request": call["params"]}
        for call in _calls(fleet, "SendCommand")
    ]


def _state_when_a_command_was_sent(fleet: Any, instance_id: str) -> str | None:
    state = None
    for event in fleet.sim.timeline():
        if event["event"] == "command_sent":
            return state
        if event["instance_id"] == instance_id and event["event"] == "state":
            state = event["to"]
    raise AssertionError("no command was sent")


def _tis(dag_run: Any) -> dict[str, Any]:
    return {ti.task_id: ti for ti in dag_run.get_task_instances()}


class TestFleetDailyRun:
    def test_scheduled_run_runs_each_role_in_chain_order_and_stops_the_signer(self, run_fleet):
        fleet = run_fleet({"tasks": _jobs("backoffice", "shield")})
        signer, worker = fleet.signer, fleet.instance("tasks")

        dag_run = fleet.run()

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
        (sent,) = _sent(fleet)
        assert sent["request"]["InstanceIds"] == [worker]
        assert sent["request"]["Comment"] == "fleet_daily tasks 2026-11-23"
        assert (sent["options"]["role"], sent["options"]["date"], sent["force"]) == (
            "tasks",
            "2026-11-23",
            False,
        )
        config = load_config()
        assert sent["spec"] == agent_spec(config, role_named(config, "tasks"))
        assert _state_when_a_command_was_sent(fleet, signer) == "running"

        calls = fleet.sim.api_calls()
        starts = [i for i, call in enumerate(calls) if call["operation"] == "StartInstances"]
        assert sorted(_instance_ids(calls[i]) for i in starts) == sorted([[signer], [worker]])
        send = next(i for i, call in enumerate(calls) if call["operation"] == "SendCommand")
        assert max(starts) < send
        assert _instance_ids(_calls(fleet, "StopInstances")[-1]) == [signer]

        assert fleet.final_states() == {signer: "stopped", worker: "stopped"}
        report = tis["tasks.report"].xcom_pull(task_ids="tasks.report")
        assert {job: (entry["instance_id"], entry["outcome"]) for job, entry in report.items()} == {
            "backoffice": (worker, 0),
            "shield": (worker, 0),
        }
        assert all(entry["duration_seconds"] >= 0 for entry in report.values())

    def test_a_failed_job_fails_its_role_a_done_role_is_skipped_and_the_signer_still_stops(self, run_fleet):
        fleet = run_fleet(
            {"tasks": _jobs("backoffice", "shield", exit_codes={"shield": 3}), "uniswap": _jobs("uniswap")}
        )
        signer, tasks_vm, uniswap_vm = fleet.signer, fleet.instance("tasks"), fleet.instance("uniswap")
        # uniswap already completed the run date (a manual run after the scheduled one).
        done = AgentReport(role="uniswap", run_date="2026-11-20", state="succeeded", jobs={"uniswap": 0})
        fleet.sim.client("ec2").create_tags(
            Resources=[uniswap_vm], Tags=[{"Key": k, "Value": v} for k, v in done.to_tags().items()]
        )
        # dag.test() hands failure callbacks the serialized DAG, on which a notifier cannot render
        # its templates (the DAG processor gives them the real one): watch the call itself.
        notify = mock.patch.object(FleetLogNotifier, "__call__", autospec=True)

        with notify as notified:
            # A manual run without a logical date: its run date is run_after's.
            dag_run = fleet.dag.test(
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
        assert fleet.final_states() == dict.fromkeys([signer, tasks_vm, uniswap_vm], "stopped")
        # The skipped role's VM was never booted, and only the other role's agent was called.
        started = [_instance_ids(call) for call in _calls(fleet, "StartInstances")]
        assert sorted(started) == sorted([[signer], [tasks_vm]])
        assert [(s["options"]["role"], s["options"]["date"]) for s in _sent(fleet)] == [
            ("tasks", "2026-11-20")
        ]
        # The job's exit code is what failed the role.
        assert [run["event"] for run in fleet.runs("tasks") if run["job"] == "shield"] == ["start", "exit 3"]
        # The DAG's failure callback is the configured notifier (the default: the log).
        (call,) = notified.call_args_list
        notifier, context = call.args
        assert notifier.message == "fleet_daily failed"
        assert context["reason"] == "task_failure"


@pytest.mark.usefixtures("notified")
class TestTheSignersStopFollowsTheRunsTurn:
    """``stop_signer`` is the teardown of ``start_signer`` and ``wait_turn``: it stops the signer
    whenever the run had its turn, and never for a run that did not (the signer is another's)."""

    def test_a_failed_start_signer_still_gets_the_signer_stopped(self, run_fleet, monkeypatch):
        fleet = run_fleet({"tasks": _jobs("backoffice")})
        started = FleetStartInstancesOperator.execute_complete

        def started_then_fail(self, context, event=None, instance_ids=None):
            result = started(self, context, event, instance_ids)
            if self.task_id == "start_signer":  # as when a check after StartInstances failed
                raise AirflowFailException("the signer's start failed after StartInstances")
            return result

        monkeypatch.setattr(FleetStartInstancesOperator, "execute_complete", started_then_fail)
        dag_run = fleet.run()

        tis = _tis(dag_run)
        assert (tis["wait_turn"].state, tis["start_signer"].state) == (
            TaskInstanceState.SUCCESS,
            TaskInstanceState.FAILED,
        )
        assert tis["stop_signer"].state == TaskInstanceState.SUCCESS
        assert fleet.sim.state(fleet.signer) == "stopped"

    def test_a_run_that_never_got_its_turn_leaves_the_signer_alone(self, run_fleet, monkeypatch):
        fleet = run_fleet({"tasks": _jobs("backoffice")})
        signer, worker = fleet.signer, fleet.instance("tasks")
        fleet.sim.client("ec2").start_instances(InstanceIds=[signer])  # up for the run that holds the fleet
        fleet.sim.wait_for_state(signer, "running")

        def no_turn(self, context):
            raise AirflowSensorTimeout("run X did not get its turn on the fleet by ...")

        monkeypatch.setattr(FleetWaitTurnSensor, "execute", no_turn)
        before = len(fleet.sim.api_calls())
        dag_run = fleet.run()

        tis = _tis(dag_run)
        assert dag_run.state == DagRunState.FAILED
        assert tis["wait_turn"].state == TaskInstanceState.FAILED
        assert tis["stop_signer"].state == TaskInstanceState.UPSTREAM_FAILED
        assert _calls(fleet, "StartInstances", before) + _calls(fleet, "StopInstances", before) == []
        assert fleet.final_states() == {signer: "running", worker: "stopped"}
