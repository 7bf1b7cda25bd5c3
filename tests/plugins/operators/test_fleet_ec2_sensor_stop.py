"""FleetInstanceStateSensor(stop_on_failure=True): a failed or overrun wait force-stops what is still up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason
from airflow.sdk.exceptions import TaskDeferralError
from fleet_operator_testing import launch, set_tags, text_of
from fleet_testing import states
from operators.fleet_aws import FleetError, FleetStateFailure
from operators.fleet_sensors import FleetInstanceStateSensor

from instance_agent.protocol import AgentReport

RUN_DATE = "2026-11-23"


def _sensor(**kwargs) -> FleetInstanceStateSensor:
    kwargs.setdefault("target_state", "stopped")
    kwargs.setdefault("poke_interval", 0)
    kwargs.setdefault("timeout", 5)
    kwargs.setdefault("deferrable", False)
    kwargs.setdefault("stop_on_failure", True)
    return FleetInstanceStateSensor(task_id="wait_stopped", **kwargs)


def _silent_agent(client, instance_id: str) -> None:
    stale = datetime.now(UTC) - timedelta(minutes=30)
    report = AgentReport(role="tasks", run_date=RUN_DATE, state="running", heartbeat=stale, progress="1/4")
    set_tags(client, instance_id, report.to_tags())


class TestFleetInstanceStateSensorStopOnFailure:
    def test_overrun_while_poking_force_stops_and_fails(self, api, client, context, task_log):
        ids = launch(client, 1)
        api.reset()

        with pytest.raises(AirflowSensorTimeout):
            _sensor(instance_ids=ids, timeout=0).execute(context)

        assert api.params("StopInstances") == [{"InstanceIds": ids, "Force": True}]
        assert states(client, ids) == {ids[0]: "stopped"}
        assert f"Force-stopped {ids[0]}: " in text_of(task_log)

    def test_silent_agent_force_stops_and_fails_without_retries(self, api, client, context, task_log):
        ids = launch(client, 1)
        _silent_agent(client, ids[0])
        api.reset()

        sensor = _sensor(instance_ids=ids, heartbeat_grace=300, run_date=RUN_DATE, timeout=60)
        with pytest.raises(FleetStateFailure, match=f"agent on {ids[0]} silent for"):
            sensor.execute(context)

        assert api.params("StopInstances") == [{"InstanceIds": ids, "Force": True}]
        assert states(client, ids) == {ids[0]: "stopped"}
        assert f"Force-stopped {ids[0]}: Waiting for stopped failed: agent on {ids[0]} silent" in text_of(
            task_log
        )

    def test_only_instances_still_up_are_stopped(self, api, client, context):
        up = launch(client, 1)
        down = launch(client, 1, state="stopped")
        api.reset()

        with pytest.raises(AirflowSensorTimeout):
            _sensor(instance_ids=[*down, *up], timeout=0).execute(context)

        assert api.params("StopInstances") == [{"InstanceIds": up, "Force": True}]

    def test_a_gone_instance_needs_no_stop(self, api, client, context):
        ids = launch(client, 1, state="terminated")
        api.reset()

        with pytest.raises(FleetStateFailure, match=f"{ids[0]} is terminated"):
            _sensor(instance_ids=ids).execute(context)

        assert api.count("StopInstances") == 0

    def test_deferred_timeout_event_force_stops(self, api, client, context):
        ids = launch(client, 1)
        api.reset()
        event = {
            "status": "timeout",
            "message": f"instances did not reach 'stopped'; still not there: {ids[0]}",
        }

        with pytest.raises(AirflowSensorTimeout, match="Waiting for stopped timed out"):
            _sensor(instance_ids=ids, deferrable=True).execute_complete(context, event)

        assert api.params("StopInstances") == [{"InstanceIds": ids, "Force": True}]

    def test_deferred_silent_agent_event_force_stops(self, api, client, context):
        ids = launch(client, 1)
        api.reset()
        event = {"status": "failed", "message": f"agent on {ids[0]} silent for 900 s"}

        with pytest.raises(FleetStateFailure):
            _sensor(instance_ids=ids, deferrable=True).execute_complete(context, event)

        assert states(client, ids) == {ids[0]: "stopped"}

    def test_deferral_timeout_force_stops(self, api, client, context):
        """Airflow's own deferral timeout resumes the task in __fail__, not in execute_complete."""
        ids = launch(client, 1)
        api.reset()
        sensor = _sensor(instance_ids=ids, deferrable=True)

        with pytest.raises(AirflowSensorTimeout):
            sensor.resume_execution(
                TRIGGER_FAIL_REPR, {"error": TriggerFailureReason.TRIGGER_TIMEOUT}, context
            )

        assert api.params("StopInstances") == [{"InstanceIds": ids, "Force": True}]
        assert states(client, ids) == {ids[0]: "stopped"}

    def test_a_crashed_trigger_does_not_stop_the_jobs(self, api, client, context):
        # Not an overrun: the jobs may be fine, and stopping would interrupt work that moves money.
        ids = launch(client, 1)
        api.reset()

        with pytest.raises(TaskDeferralError):
            _sensor(instance_ids=ids, deferrable=True).resume_execution(
                TRIGGER_FAIL_REPR, {"error": TriggerFailureReason.TRIGGER_FAILURE}, context
            )

        assert api.count("StopInstances") == 0

    def test_api_error_does_not_stop(self, api, client, context):
        # A plain FleetError is transient trouble that the task's retries handle: the VM keeps working.
        ids = launch(client, 1)
        api.reset()

        with pytest.raises(FleetError, match="hit an error"):
            _sensor(instance_ids=ids, deferrable=True).execute_complete(
                context, {"status": "error", "message": "RequestLimitExceeded"}
            )

        assert api.count("StopInstances") == 0

    def test_without_stop_on_failure_the_instance_keeps_running(self, api, client, context):
        ids = launch(client, 1)
        api.reset()

        with pytest.raises(AirflowSensorTimeout):
            _sensor(instance_ids=ids, timeout=0, stop_on_failure=False).execute(context)

        assert api.count("StopInstances") == 0
        assert states(client, ids) == {ids[0]: "running"}

    def test_success_stops_nothing(self, api, client, context):
        ids = launch(client, 1, state="stopped")
        api.reset()

        assert _sensor(instance_ids=ids).execute(context) == {ids[0]: {"state": "stopped", "tags": {}}}
        assert api.count("StopInstances") == 0

    def test_a_failed_stop_is_logged_and_the_wait_error_kept(self, api, client, context, task_log):
        ids = launch(client, 1)
        api.fail("StopInstances", "UnauthorizedOperation", "not allowed to stop")
        api.reset()

        with pytest.raises(AirflowSensorTimeout):
            _sensor(instance_ids=ids, timeout=0).execute(context)

        assert states(client, ids) == {ids[0]: "running"}
        assert f"Could not force-stop {ids[0]} after the failed wait" in text_of(task_log)
        assert "not allowed to stop" in text_of(task_log)
