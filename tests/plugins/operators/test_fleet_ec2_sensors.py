"""Tests for operators.fleet_sensors: the instance state sensor, poking and deferred."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    PokeReturnValue,
    TaskDeferred,
)
from fleet_operator_testing import launch, set_tags
from operators.fleet_aws import FleetError, FleetStateFailure
from operators.fleet_ec2_triggers import FleetInstanceStateTrigger
from operators.fleet_sensors import FleetInstanceStateSensor

from instance_agent.protocol import AgentReport


def _sensor(**kwargs) -> FleetInstanceStateSensor:
    kwargs.setdefault("poke_interval", 0)
    kwargs.setdefault("timeout", 5)
    kwargs.setdefault("deferrable", False)
    return FleetInstanceStateSensor(task_id="wait", **kwargs)


class TestFleetInstanceStateSensor:
    def test_template_fields(self):
        assert set(FleetInstanceStateSensor.template_fields) == {
            "aws_conn_id",
            "region_name",
            "verify",
            "instance_ids",
            "target_state",
            "run_date",
            "skip_when_done_for",
        }

    def test_hook_is_a_client_with_standard_retries(self):
        sensor = _sensor(instance_ids=["i-1"], target_state="stopped")
        assert sensor.hook.conn.meta.config.retries == {"mode": "standard", "total_max_attempts": 9}

    def test_poke_not_there_yet(self, api, client, context):
        ids = launch(client, 2)
        api.reset()
        assert _sensor(instance_ids=ids, target_state="stopped").poke(context) is False
        assert api.count("DescribeInstances") == 1

    def test_poke_done_returns_each_instances_state_and_tags(self, api, client, context, task_log):
        ids = launch(client, 2, state="stopped", tags={"fleet:state": "succeeded"})
        result = _sensor(instance_ids=ids, target_state="stopped").poke(context)
        assert isinstance(result, PokeReturnValue)
        assert result.is_done
        assert result.xcom_value == {
            i: {"state": "stopped", "tags": {"fleet:state": "succeeded"}} for i in ids
        }
        assert f"All 2 instance(s) stopped: {ids[0]}, {ids[1]}" in [e["event"] for e in task_log]

    def test_pokes_share_one_trigger_and_one_client(self, api, client, context):
        ids = launch(client, 1)
        api.reset()
        sensor = _sensor(instance_ids=ids, target_state="stopped")
        assert sensor.poke(context) is False
        assert sensor.poke(context) is False
        assert api.count("DescribeInstances") == 2
        assert api.clients_created == 1

    def test_execute_pokes_until_done_and_returns_the_instances(self, api, client, context):
        ids = launch(client, 1, state="stopped")
        api.report_states(ids[0], "stopping", "stopping")
        api.reset()
        result = _sensor(instance_ids=ids, target_state="stopped").execute(context)
        assert result == {ids[0]: {"state": "stopped", "tags": {}}}
        assert api.count("DescribeInstances") == 3

    def test_failure_state_fails_at_once_without_retries(self, api, client, context):
        ids = launch(client, 1, state="terminated")
        api.reset()
        sensor = _sensor(instance_ids=ids, target_state="stopped", timeout=60)
        with pytest.raises(
            FleetStateFailure, match=f"Waiting for stopped failed: {ids[0]} is terminated"
        ) as err:
            sensor.execute(context)
        assert isinstance(err.value, AirflowFailException)
        assert api.count("DescribeInstances") == 1

    def test_custom_failure_states(self, api, client, context):
        ids = launch(client, 1)
        with pytest.raises(FleetStateFailure, match=f"{ids[0]} is running while waiting for stopped"):
            _sensor(instance_ids=ids, target_state="stopped", failure_states=["running"]).poke(context)

    def test_silent_agent_fails_naming_it(self, api, client, context):
        ids = launch(client, 1)
        stale = datetime.now(UTC) - timedelta(minutes=30)
        set_tags(
            client,
            ids[0],
            AgentReport(role="pricing", run_date="2026-11-23", state="running", heartbeat=stale).to_tags(),
        )
        sensor = _sensor(instance_ids=ids, target_state="stopped", heartbeat_grace=300, run_date="2026-11-23")
        with pytest.raises(FleetStateFailure, match=rf"agent on {ids[0]} silent for 1[78]\d\d s"):
            sensor.poke(context)

    def test_soft_fail_skips_on_a_failure_state(self, api, client, context):
        ids = launch(client, 1, state="terminated")
        with pytest.raises(AirflowSkipException):
            _sensor(instance_ids=ids, target_state="stopped", soft_fail=True).execute(context)

    def test_api_error_is_a_plain_fleet_error_so_retries_apply(self, api, client, context):
        with pytest.raises(FleetError, match=r"hit an error: .*i-0000000000000dead") as err:
            _sensor(instance_ids=["i-0000000000000dead"], target_state="stopped").poke(context)
        assert not isinstance(err.value, AirflowFailException)

    def test_times_out_like_any_sensor(self, api, client, context):
        ids = launch(client, 1)
        with pytest.raises(AirflowSensorTimeout):
            _sensor(instance_ids=ids, target_state="stopped", timeout=0).execute(context)


class TestFleetInstanceStateSensorDeferrable:
    def test_defers_at_once_with_an_explicit_timeout(self, api, context):
        sensor = _sensor(
            instance_ids="i-1,i-2",
            target_state="stopped",
            heartbeat_grace=600,
            run_date="2026-11-23",
            poke_interval=60,
            timeout=3 * 3600 + 1,
            deferrable=True,
            aws_conn_id="fleet",
            region_name="eu-west-1",
        )
        with pytest.raises(TaskDeferred) as deferred:
            sensor.execute(context)

        assert api.count("DescribeInstances") == 0
        assert deferred.value.method_name == "execute_complete"
        assert deferred.value.timeout == timedelta(seconds=3 * 3600 + 1)
        trigger = deferred.value.trigger
        assert isinstance(trigger, FleetInstanceStateTrigger)
        assert trigger.serialize()[1] == {
            "instance_ids": ["i-1", "i-2"],
            "target_state": "stopped",
            "failure_states": ["shutting-down", "terminated"],
            "require_status_ok": False,
            "heartbeat_grace": 600,
            "run_date": "2026-11-23",
            "waiter_delay": 60,
            "waiter_max_attempts": 181,  # ceil(10801 / 60)
            "aws_conn_id": "fleet",
            "region_name": "eu-west-1",
            "verify": None,
            "botocore_config": None,
        }

    def test_zero_poke_interval_polls_once(self, context):
        sensor = _sensor(instance_ids=["i-1"], target_state="running", poke_interval=0, deferrable=True)
        with pytest.raises(TaskDeferred) as deferred:
            sensor.execute(context)
        assert deferred.value.trigger.waiter_max_attempts == 1

    def test_execute_complete_returns_the_instances(self, context):
        instances = {"i-1": {"state": "stopped", "tags": {"fleet:state": "succeeded"}}}
        event = {"status": "success", "message": "1 instance(s) stopped", "instances": instances}
        assert (
            _sensor(instance_ids=["i-1"], target_state="stopped").execute_complete(context, event)
            == instances
        )

    @pytest.mark.parametrize(
        ("status", "error", "text"),
        [
            ("failed", FleetStateFailure, "Waiting for stopped failed: agent on i-1 silent for 900 s"),
            ("timeout", AirflowSensorTimeout, "Waiting for stopped timed out: agent on i-1 silent for 900 s"),
            ("error", FleetError, "Waiting for stopped hit an error: agent on i-1 silent for 900 s"),
        ],
    )
    def test_execute_complete_raises_for_other_events(self, context, status, error, text):
        sensor = _sensor(instance_ids=["i-1"], target_state="stopped")
        with pytest.raises(error) as raised:
            sensor.execute_complete(context, {"status": status, "message": "agent on i-1 silent for 900 s"})
        assert str(raised.value) == text

    def test_execute_complete_without_an_event(self, context):
        with pytest.raises(FleetError, match="unexpected trigger event None"):
            _sensor(instance_ids=["i-1"], target_state="stopped").execute_complete(context, None)

    def test_soft_fail_turns_a_deferred_failure_into_a_skip(self, context):
        sensor = _sensor(instance_ids=["i-1"], target_state="stopped", soft_fail=True)
        with pytest.raises(AirflowSkipException):
            sensor.resume_execution(
                "execute_complete", {"event": {"status": "failed", "message": "i-1 is terminated"}}, context
            )


class TestFleetInstanceStateSensorTemplates:
    def test_rendered_fields_reach_the_trigger(self):
        sensor = _sensor(
            instance_ids="{{ ids }}",
            target_state="{{ target }}",
            run_date="{{ ds }}",
            heartbeat_grace=120,
            deferrable=True,
        )
        sensor.render_template_fields({"ids": ["i-1", "i-2"], "target": "stopped", "ds": "2026-11-23"})
        trigger = sensor.build_trigger()
        assert trigger.instance_ids == ["i-1", "i-2"]
        assert trigger.target_state == "stopped"
        assert trigger.run_date == "2026-11-23"
