"""FleetSsmAgentOnlineSensor against a stubbed SSM client (moto lacks DescribeInstanceInformation)."""

from __future__ import annotations

import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout, TaskDeferred
from fleet_operator_testing import I1, I2, text_of
from operators.fleet_aws import DEFAULT_RETRIES, FleetError
from operators.fleet_sensors import FleetSsmAgentOnlineSensor
from operators.fleet_ssm_triggers import FleetSsmAgentOnlineTrigger
from operators.fleet_wait import defer_timeout


def add_info(stub, batch, pings: dict[str, str]):
    stub.add_response(
        "describe_instance_information",
        {
            "InstanceInformationList": [
                {"InstanceId": instance_id, "PingStatus": ping, "AgentVersion": "3.3.1142.0"}
                for instance_id, ping in pings.items()
            ]
        },
        {"Filters": [{"Key": "InstanceIds", "Values": batch}], "MaxResults": 50},
    )


def make_sensor(instance_ids, **kwargs) -> FleetSsmAgentOnlineSensor:
    kwargs.setdefault("deferrable", False)
    return FleetSsmAgentOnlineSensor(task_id="wait_agent", instance_ids=instance_ids, **kwargs)


class TestFleetSsmAgentOnlineSensor:
    def test_pokes_through_connection_lost_until_online(self, stub, task_log):
        add_info(stub, [I1, I2], {I1: "Online", I2: "ConnectionLost"})
        add_info(stub, [I1, I2], {I1: "Online", I2: "Online"})
        sensor = make_sensor([I1, I2], poke_interval=0, timeout=60)

        result = sensor.execute({"ti": None})

        assert result == {
            I1: {"ping_status": "Online", "agent_version": "3.3.1142.0", "platform_name": None},
            I2: {"ping_status": "Online", "agent_version": "3.3.1142.0", "platform_name": None},
        }
        assert f"SSM agent not online yet on 1 of 2 instance(s): {I2} (ConnectionLost)" in text_of(task_log)

    def test_poke_timeout_names_the_missing_agents(self, stub):
        add_info(stub, [I1, I2], {I1: "Online", I2: "Inactive"})
        sensor = make_sensor([I1, I2], poke_interval=0, timeout=0)

        with pytest.raises(AirflowSensorTimeout, match=rf"not online on: {I2} \(Inactive\)"):
            sensor.execute({"ti": None})

    def test_poking_is_bounded_by_default(self):
        sensor = make_sensor([I1])
        assert (sensor.poke_interval, sensor.timeout) == (15, 600)

    def test_a_poke_error_is_a_fleet_error_as_for_every_sensor(self, stub):
        stub.add_client_error("describe_instance_information", "AccessDeniedException", "no")
        with pytest.raises(FleetError, match="SSM agent online wait error: AccessDeniedException: no"):
            make_sensor([I1]).poke({})

    def test_accepts_a_templated_comma_separated_string(self, stub):
        add_info(stub, [I1, I2], {I1: "Online", I2: "Online"})

        assert set(make_sensor(f"{I1}, {I2}").execute({"ti": None})) == {I1, I2}

    def test_deferrable_defers_with_the_trigger_and_an_explicit_timeout(self, stub):
        add_info(stub, [I1], {})
        sensor = make_sensor([I1], deferrable=True, poke_interval=20, timeout=600)

        with pytest.raises(TaskDeferred) as deferred:
            sensor.execute({"ti": None})

        trigger = deferred.value.trigger
        assert isinstance(trigger, FleetSsmAgentOnlineTrigger)
        assert trigger.serialize()[1]["instance_ids"] == [I1]
        assert (trigger.waiter_delay, trigger.waiter_max_attempts) == (20, 30)
        assert deferred.value.method_name == "execute_complete"
        assert deferred.value.timeout == defer_timeout(20, 30)

    def test_deferrable_returns_at_once_when_already_online(self, stub):
        add_info(stub, [I1], {I1: "Online"})

        result = make_sensor([I1], deferrable=True).execute({"ti": None})

        assert result[I1]["ping_status"] == "Online"

    def test_execute_complete_fails_on_a_timeout_event(self):
        event = {"status": "timeout", "message": f"SSM agent not online on: {I1} (ConnectionLost)"}

        with pytest.raises(FleetError, match=rf"timeout: .*{I1} \(ConnectionLost\)"):
            make_sensor([I1], deferrable=True).execute_complete({}, event=event)

    def test_execute_complete_returns_the_instances(self):
        event = {"status": "success", "message": "ok", "instances": {I1: {"ping_status": "Online"}}}

        assert make_sensor([I1]).execute_complete({}, event=event) == {I1: {"ping_status": "Online"}}

    def test_hook_has_bounded_standard_retries(self):
        assert make_sensor([I1]).hook.config.retries == DEFAULT_RETRIES

    def test_template_fields(self):
        assert {"instance_ids", "aws_conn_id", "region_name"} <= set(
            FleetSsmAgentOnlineSensor.template_fields
        )
