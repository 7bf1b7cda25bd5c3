"""Tests for operators.fleet_ec2_operators: batched, idempotent start and stop of instances."""

from __future__ import annotations

from datetime import UTC, datetime

import botocore.retries.standard
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred
from airflow.sdk import DAG
from airflow.serialization.serialized_objects import DagSerialization
from fleet_operator_testing import launch, messages, pushed_xcoms, start_operator, stop_operator
from fleet_testing import states
from operators.fleet_aws import FleetError
from operators.fleet_ec2 import SETTLED
from operators.fleet_ec2_operators import FleetStartInstancesOperator, FleetStopInstancesOperator
from operators.fleet_ec2_triggers import FleetInstanceStateTrigger
from operators.fleet_sensors import FleetInstanceStateSensor
from operators.fleet_wait import defer_timeout


@pytest.fixture
def backoff(monkeypatch):
    """botocore's retry delays, recorded and not slept (the attempt numbers that asked for one)."""
    asked: list[int] = []

    def no_delay(self, context):
        asked.append(context.attempt_number)
        return 0

    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", no_delay)
    return asked


SUCCESS_EVENT = {"status": "success", "message": "ok", "instances": {}}


class TestFleetStartInstancesOperator:
    def test_template_fields_include_the_ids_and_the_connection(self):
        assert set(FleetStartInstancesOperator.template_fields) == {
            "aws_conn_id",
            "region_name",
            "verify",
            "instance_ids",
            "candidates",
            "skip_when_done_for",
        }

    def test_hook_is_a_client_with_standard_retries(self):
        op = start_operator(instance_ids=["i-1"], botocore_config={"read_timeout": 4})
        assert op.hook.conn.meta.config.retries == {"mode": "standard", "total_max_attempts": 9}
        assert op.hook.conn.meta.config.read_timeout == 4

    def test_starts_the_stopped_ones_in_one_call(self, api, client, context, task_log):
        running = launch(client, 1)
        stopped = launch(client, 2, state="stopped")
        ids = [running[0], *stopped]
        api.reset()

        result = start_operator(instance_ids=ids).execute(context)

        assert result == ids
        assert api.params("StartInstances") == [{"InstanceIds": stopped}]
        assert states(client, ids) == dict.fromkeys(ids, "running")
        assert pushed_xcoms(context) == {"started": stopped, "already_running": running}
        assert f"StartInstances called for 2 instance(s): {stopped[0]}, {stopped[1]}" in messages(task_log)
        assert f"Already running or starting, no call needed: {running[0]} (running)" in messages(task_log)
        assert f"3 instance(s) running: {', '.join(ids)}" in messages(task_log)

    def test_reads_all_states_with_one_describe(self, api, client, context):
        ids = launch(client, 5, state="stopped")
        api.reset()
        start_operator(instance_ids=ids, wait_for_completion=False).execute(context)
        assert api.count("DescribeInstances") == 1
        assert api.count("StartInstances") == 1

    def test_all_running_makes_no_call(self, api, client, context):
        ids = launch(client, 2)
        api.reset()
        assert start_operator(instance_ids=ids, deferrable=True).execute(context) == ids
        assert api.count("StartInstances") == 0
        assert api.count("DescribeInstances") == 1  # nothing to wait for, so no deferral either
        assert pushed_xcoms(context) == {"started": [], "already_running": ids}

    def test_comma_separated_ids(self, api, client, context):
        ids = launch(client, 2, state="stopped")
        assert start_operator(instance_ids=f"{ids[0]}, {ids[1]}").execute(context) == ids
        assert api.params("StartInstances") == [{"InstanceIds": ids}]

    def test_pending_counts_as_starting(self, api, client, context):
        ids = launch(client, 1)
        api.report_states(ids[0], "pending")
        api.reset()
        assert start_operator(instance_ids=ids).execute(context) == ids
        assert api.count("StartInstances") == 0
        assert pushed_xcoms(context)["already_running"] == ids

    def test_stopping_instance_is_waited_out_then_started(self, api, client, context, task_log):
        ids = launch(client, 1, state="stopped")
        api.report_states(ids[0], "stopping", "stopping")
        api.reset()

        assert start_operator(instance_ids=ids).execute(context) == ids

        assert f"Waiting for {ids[0]} (stopping) to finish their transition before start" in messages(
            task_log
        )
        assert api.params("StartInstances") == [{"InstanceIds": ids}]
        # operator read, two settle polls (stopping, then stopped), second read, one poll for running
        assert api.count("DescribeInstances") == 5
        assert pushed_xcoms(context)["started"] == ids

    def test_terminated_instance_fails_naming_it_without_retries(self, api, client, context):
        stopped = launch(client, 1, state="stopped")
        terminated = launch(client, 1, state="terminated")
        with pytest.raises(FleetError, match=f"Cannot start {terminated[0]}: it is terminated") as failed:
            start_operator(instance_ids=[*stopped, *terminated]).execute(context)
        # A retry would find it terminated all the same.
        assert isinstance(failed.value, AirflowFailException)
        assert api.count("StartInstances") == 0
        context["ti"].xcom_push.assert_not_called()

    def test_instance_being_terminated_fails_at_once(self, api, client, context):
        ids = launch(client, 1)
        api.report_states(ids[0], "shutting-down")
        with pytest.raises(FleetError, match=f"Cannot start {ids[0]}: it is shutting-down"):
            start_operator(instance_ids=ids).execute(context)

    def test_unknown_instance_fails_naming_it(self, api, client, context):
        ids = launch(client, 1, state="stopped")
        with pytest.raises(FleetError, match="i-0000000000000dead"):
            start_operator(instance_ids=[*ids, "i-0000000000000dead"]).execute(context)
        assert api.count("StartInstances") == 0

    def test_incorrect_state_race_is_read_again_and_retried(self, api, client, context, task_log):
        ids = launch(client, 1, state="stopped")
        api.fail(
            "StartInstances",
            "IncorrectInstanceState",
            "The instance is not in a state from which it can be started.",
        )
        api.reset()

        assert start_operator(instance_ids=ids).execute(context) == ids

        assert api.params("StartInstances") == [{"InstanceIds": ids}, {"InstanceIds": ids}]
        assert states(client, ids) == {ids[0]: "running"}
        assert any(
            message.startswith("Start raced with another change (IncorrectInstanceState")
            for message in messages(task_log)
        )

    def test_a_race_that_never_ends_fails_naming_the_instance_and_state(self, api, client, context):
        ids = launch(client, 1, state="stopped")
        api.fail("StartInstances", "IncorrectInstanceState", "not startable", times=10)
        op = start_operator(instance_ids=ids)

        with pytest.raises(FleetError) as failure:
            op.execute(context)

        assert str(failure.value) == (
            f"Could not start {ids[0]} (stopped): their state kept changing through "
            f"{op.max_state_rounds} attempts; last error: IncorrectInstanceState: not startable"
        )
        assert api.count("StartInstances") == op.max_state_rounds

    def test_other_errors_fail_naming_the_instances(self, api, client, context):
        ids = launch(client, 2, state="stopped")
        api.fail("StartInstances", "InsufficientInstanceCapacity", "no t3.micro in us-east-1a")
        with pytest.raises(
            FleetError,
            match=f"Start of {ids[0]}, {ids[1]} failed: InsufficientInstanceCapacity: no t3.micro",
        ):
            start_operator(instance_ids=ids).execute(context)

    def test_throttling_is_retried_by_botocore(self, api, client, context, backoff):
        ids = launch(client, 1, state="stopped")
        api.throttle("StartInstances", 3)
        api.reset()

        assert start_operator(instance_ids=ids, wait_for_completion=False).execute(context) == ids

        assert api.count("StartInstances") == 1  # one API call ...
        assert api.sent["StartInstances"] == 4  # ... sent four times: three throttled, then accepted
        assert backoff == [1, 2, 3]
        assert pushed_xcoms(context)["started"] == ids

    def test_throttling_past_the_retry_bound_fails(self, api, client, context, backoff):
        ids = launch(client, 1, state="stopped")
        api.throttle("StartInstances", 50)
        api.reset()
        with pytest.raises(FleetError, match=f"Start of {ids[0]} failed: RequestLimitExceeded"):
            start_operator(instance_ids=ids).execute(context)
        assert api.sent["StartInstances"] == 9
        assert len(backoff) == 8

    def test_waits_for_status_checks_when_asked(self, api, client, context):
        ids = launch(client, 1, state="stopped")
        api.reset()
        start_operator(instance_ids=ids, require_status_ok=True).execute(context)
        assert api.params("DescribeInstanceStatus") == [{"InstanceIds": ids}]

    def test_already_running_still_waits_for_status_checks(self, api, client, context):
        ids = launch(client, 1)
        api.reset()
        start_operator(instance_ids=ids, require_status_ok=True).execute(context)
        assert api.count("StartInstances") == 0
        assert api.params("DescribeInstanceStatus") == [{"InstanceIds": ids}]

    def test_no_wait_when_not_asked(self, api, client, context):
        ids = launch(client, 1, state="stopped")
        api.reset()
        start_operator(instance_ids=ids, wait_for_completion=False).execute(context)
        assert api.count("DescribeInstances") == 1

    def test_a_failed_wait_fails_the_task(self, api, client, context):
        ids = launch(client, 1, state="stopped")
        # After the start, the wait for running sees the instance stopping: a failure state.
        api.report_states(ids[0], "stopped", "stopping")
        with pytest.raises(FleetError, match=f"Waiting for running failed: {ids[0]} is stopping"):
            start_operator(instance_ids=ids).execute(context)

    @pytest.mark.parametrize("kwargs", [{}, {"instance_ids": ["i-1"], "candidates": ["i-2"]}])
    def test_needs_exactly_one_of_ids_and_candidates(self, kwargs, context):
        with pytest.raises(ValueError, match="start: give exactly one of instance_ids and candidates"):
            start_operator(**kwargs).execute(context)


class TestFleetStartInstancesOperatorDeferrable:
    def test_defers_the_wait_for_running(self, api, client, context):
        ids = launch(client, 2, state="stopped")
        op = start_operator(instance_ids=ids, deferrable=True, waiter_delay=20, waiter_max_attempts=30)

        with pytest.raises(TaskDeferred) as deferred:
            op.execute(context)

        assert api.params("StartInstances") == [{"InstanceIds": ids}]
        assert deferred.value.method_name == "execute_complete"
        assert deferred.value.kwargs == {"instance_ids": ids}
        assert deferred.value.timeout == defer_timeout(20, 30)
        trigger = deferred.value.trigger
        assert isinstance(trigger, FleetInstanceStateTrigger)
        assert trigger.instance_ids == ids
        assert trigger.target_state == "running"
        assert (trigger.waiter_delay, trigger.waiter_max_attempts) == (20, 30)
        assert pushed_xcoms(context)["started"] == ids

    def test_candidate_deferral_carries_the_chosen_instance(self, api, client, context):
        ids = launch(client, 2, state="stopped")
        with pytest.raises(TaskDeferred) as deferred:
            start_operator(candidates=ids, deferrable=True, require_status_ok=True).execute(context)
        assert deferred.value.kwargs == {"instance_ids": [ids[0]]}
        assert deferred.value.trigger.instance_ids == [ids[0]]
        assert deferred.value.trigger.require_status_ok is True

    def test_execute_complete(self, context, task_log):
        op = start_operator(instance_ids=["i-1", "i-2"])
        assert op.execute_complete(context, SUCCESS_EVENT, instance_ids=["i-1", "i-2"]) == ["i-1", "i-2"]
        assert "2 instance(s) running: i-1, i-2" in messages(task_log)
        with pytest.raises(FleetError, match="Waiting for running timeout: i-2 still pending"):
            op.execute_complete(
                context, {"status": "timeout", "message": "i-2 still pending"}, ["i-1", "i-2"]
            )

    def test_stopping_instance_defers_a_settle_wait_then_resumes(self, api, client, context):
        ids = launch(client, 1, state="stopped")
        api.report_states(ids[0], "stopping")
        op = start_operator(instance_ids=ids, deferrable=True)

        with pytest.raises(TaskDeferred) as deferred:
            op.execute(context)

        assert api.count("StartInstances") == 0
        assert deferred.value.method_name == "resume_after_settle"
        assert deferred.value.kwargs == {"round_no": 1}
        assert deferred.value.trigger.target_state == SETTLED
        assert deferred.value.trigger.instance_ids == ids
        assert deferred.value.timeout == defer_timeout(0, 3)

        # The triggerer saw it settle; a fresh run of the task resumes at the start step.
        settled = {"status": "success", "message": "1 instance(s) settled", "instances": {}}
        with pytest.raises(TaskDeferred) as deferred_again:
            start_operator(instance_ids=ids, deferrable=True).resume_after_settle(
                context, event=settled, round_no=1
            )

        assert api.params("StartInstances") == [{"InstanceIds": ids}]
        assert deferred_again.value.method_name == "execute_complete"

    def test_a_failed_settle_wait_fails_the_task(self, context):
        with pytest.raises(FleetError, match="settle before start failed: i-1 is terminated"):
            start_operator(instance_ids=["i-1"]).resume_after_settle(
                context, event={"status": "failed", "message": "i-1 is terminated"}, round_no=1
            )


class TestFleetStopInstancesOperator:
    def test_template_fields(self):
        assert set(FleetStopInstancesOperator.template_fields) == {
            "aws_conn_id",
            "region_name",
            "verify",
            "instance_ids",
        }

    def test_stops_the_running_ones_in_one_call(self, api, client, context, task_log):
        running = launch(client, 2)
        stopped = launch(client, 1, state="stopped")
        ids = [*running, *stopped]
        api.reset()

        assert stop_operator(instance_ids=ids).execute(context) == ids

        assert api.params("StopInstances") == [{"InstanceIds": running, "Force": False}]
        assert states(client, ids) == dict.fromkeys(ids, "stopped")
        assert pushed_xcoms(context) == {"stopped": running, "already_stopped": stopped}
        assert f"StopInstances called for 2 instance(s): {running[0]}, {running[1]}" in messages(task_log)
        assert f"Already stopped or stopping, no call needed: {stopped[0]} (stopped)" in messages(task_log)

    def test_force_is_passed(self, api, client, context):
        ids = launch(client, 1)
        stop_operator(instance_ids=ids, force=True).execute(context)
        assert api.params("StopInstances") == [{"InstanceIds": ids, "Force": True}]

    def test_all_stopped_makes_no_call(self, api, client, context):
        ids = launch(client, 2, state="stopped")
        api.reset()
        assert stop_operator(instance_ids=ids, deferrable=True).execute(context) == ids
        assert api.count("StopInstances") == 0
        assert api.count("DescribeInstances") == 1

    def test_stopping_is_waited_for_without_a_call(self, api, client, context):
        ids = launch(client, 1, state="stopped")
        api.report_states(ids[0], "stopping", "stopping")
        api.reset()
        assert stop_operator(instance_ids=ids).execute(context) == ids
        assert api.count("StopInstances") == 0
        assert pushed_xcoms(context)["already_stopped"] == ids
        # one read, then polls: stopping, stopped
        assert api.count("DescribeInstances") == 3

    def test_pending_is_waited_out_then_stopped(self, api, client, context, task_log):
        ids = launch(client, 1)
        api.report_states(ids[0], "pending")
        api.reset()
        assert stop_operator(instance_ids=ids).execute(context) == ids
        assert f"Waiting for {ids[0]} (pending) to finish their transition before stop" in messages(task_log)
        assert api.params("StopInstances") == [{"InstanceIds": ids, "Force": False}]

    def test_terminated_instance_fails_naming_it(self, api, client, context):
        running = launch(client, 1)
        terminated = launch(client, 1, state="terminated")
        with pytest.raises(FleetError, match=f"Cannot stop {terminated[0]}: it is terminated"):
            stop_operator(instance_ids=[*running, *terminated]).execute(context)
        assert api.count("StopInstances") == 0

    def test_unknown_instance_fails_naming_it(self, api, client, context):
        with pytest.raises(FleetError, match="i-0000000000000dead"):
            stop_operator(instance_ids=["i-0000000000000dead"]).execute(context)

    def test_incorrect_state_race_is_retried(self, api, client, context):
        ids = launch(client, 1)
        api.fail("StopInstances", "IncorrectInstanceState", "busy")
        assert stop_operator(instance_ids=ids).execute(context) == ids
        assert api.count("StopInstances") == 2

    def test_defers_the_wait_for_stopped(self, api, client, context):
        ids = launch(client, 1)
        with pytest.raises(TaskDeferred) as deferred:
            stop_operator(instance_ids=ids, deferrable=True, waiter_delay=15, waiter_max_attempts=8).execute(
                context
            )
        assert api.count("StopInstances") == 1
        assert deferred.value.method_name == "execute_complete"
        assert deferred.value.trigger.target_state == "stopped"
        assert deferred.value.trigger.failure_states == ["shutting-down", "terminated"]
        assert deferred.value.timeout == defer_timeout(15, 8)

    def test_execute_complete_returns_the_ids_or_fails(self, context):
        op = stop_operator(instance_ids=["i-1"])
        assert op.execute_complete(context, SUCCESS_EVENT, instance_ids=["i-1"]) == ["i-1"]
        with pytest.raises(FleetError, match="Waiting for stopped failed: i-1 is terminated"):
            op.execute_complete(context, {"status": "failed", "message": "i-1 is terminated"}, ["i-1"])


class TestInADag:
    def test_operators_and_sensor_serialize_in_a_dag_with_a_teardown(self):
        with DAG(
            "fleet_ec2_serialization", start_date=datetime(2026, 1, 1, tzinfo=UTC), schedule=None
        ) as dag:
            start = FleetStartInstancesOperator(task_id="start", candidates=["i-1", "i-2"], deferrable=True)
            wait = FleetInstanceStateSensor(
                task_id="wait", instance_ids="{{ ti.xcom_pull('start') }}", target_state="stopped"
            )
            stop = FleetStopInstancesOperator(task_id="stop", instance_ids=["i-3"], force=True)
            start >> wait >> stop.as_teardown(setups=start)

        rebuilt = DagSerialization.from_dict(DagSerialization.to_dict(dag))

        assert rebuilt.task_dict["start"].candidates == ["i-1", "i-2"]
        assert rebuilt.task_dict["wait"].instance_ids == "{{ ti.xcom_pull('start') }}"
        assert rebuilt.task_dict["stop"].is_teardown
