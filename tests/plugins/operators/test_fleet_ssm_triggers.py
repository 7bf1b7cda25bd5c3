"""FleetSsmAgentOnlineTrigger and FleetRunCommandTrigger against a stubbed SSM client.

moto implements neither DescribeInstanceInformation, ListCommandInvocations nor CancelCommand,
so a botocore Stubber answers instead: it also checks each call's exact arguments, refuses calls
nobody expected, and the fixture fails a test that leaves an expected call unmade.
"""

from __future__ import annotations

import importlib
import json

import pytest
from fleet_operator_testing import I1, I2, I3, iid, text_of
from operators.fleet_aws import DEFAULT_RETRIES
from operators.fleet_ssm_triggers import FleetRunCommandTrigger, FleetSsmAgentOnlineTrigger

CMD_A = "aaaaaaaa-0000-4000-8000-000000000001"
CMD_B = "bbbbbbbb-0000-4000-8000-000000000002"


async def run_to_end(trigger) -> dict:
    events = [event async for event in trigger.run()]
    assert len(events) == 1, events
    payload = events[0].payload
    # The triggerer stores the payload as JSON.
    assert json.loads(json.dumps(payload)) == payload
    return payload


def assert_rebuilds(trigger, classpath: str) -> None:
    path, kwargs = trigger.serialize()
    assert path == classpath
    json.dumps(kwargs)
    module, name = path.rsplit(".", 1)
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (path, kwargs)


# -- agent online -------------------------------------------------------------------------------


def info_params(batch, token=None):
    params = {"Filters": [{"Key": "InstanceIds", "Values": batch}], "MaxResults": 50}
    if token:
        params["NextToken"] = token
    return params


def info_page(pings: dict[str, str], token=None):
    page = {
        "InstanceInformationList": [
            {
                "InstanceId": instance_id,
                "PingStatus": ping,
                "AgentVersion": "3.3.1142.0",
                "PlatformName": "Amazon Linux",
            }
            for instance_id, ping in pings.items()
        ]
    }
    if token:
        page["NextToken"] = token
    return page


def agent_trigger(instance_ids, **kwargs):
    kwargs.setdefault("waiter_delay", 0)
    kwargs.setdefault("waiter_max_attempts", 5)
    return FleetSsmAgentOnlineTrigger(instance_ids=instance_ids, **kwargs)


class TestFleetSsmAgentOnlineTrigger:
    async def test_waits_through_connection_lost_until_online(self, stub, task_log):
        stub.add_response(
            "describe_instance_information",
            info_page({I1: "Online", I2: "ConnectionLost"}),
            info_params([I1, I2]),
        )
        stub.add_response(
            "describe_instance_information", info_page({I1: "Online", I2: "Online"}), info_params([I1, I2])
        )

        event = await run_to_end(agent_trigger([I1, I2]))

        assert event["status"] == "success"
        assert event["instances"][I2] == {
            "ping_status": "Online",
            "agent_version": "3.3.1142.0",
            "platform_name": "Amazon Linux",
        }
        logged = text_of(task_log)
        assert f"{I2} (ConnectionLost)" in logged
        assert f"{I1} (" not in logged

    async def test_times_out_naming_each_missing_agent_and_its_status(self, stub):
        for _ in range(3):
            stub.add_response(
                "describe_instance_information", info_page({I1: "Inactive"}), info_params([I1, I2])
            )

        event = await run_to_end(agent_trigger([I1, I2], waiter_max_attempts=3))

        assert event["status"] == "timeout"
        assert f"{I1} (Inactive)" in event["message"]
        assert f"{I2} (not registered)" in event["message"]
        assert "3 polls" in event["message"]

    async def test_batches_of_50_and_follows_next_token(self, stub):
        ids = [iid(n) for n in range(120)]
        stub.add_response(
            "describe_instance_information",
            info_page(dict.fromkeys(ids[:30], "Online"), token="page-2"),
            info_params(ids[:50]),
        )
        stub.add_response(
            "describe_instance_information",
            info_page(dict.fromkeys(ids[30:50], "Online")),
            info_params(ids[:50], token="page-2"),
        )
        stub.add_response(
            "describe_instance_information",
            info_page(dict.fromkeys(ids[50:100], "Online")),
            info_params(ids[50:100]),
        )
        stub.add_response(
            "describe_instance_information",
            info_page(dict.fromkeys(ids[100:], "Online")),
            info_params(ids[100:]),
        )

        event = await run_to_end(agent_trigger(ids))

        assert event["status"] == "success"
        assert set(event["instances"]) == set(ids)

    async def test_batch_refused_as_invalid_instance_counts_as_not_registered(self, stub, task_log):
        stub.add_client_error(
            "describe_instance_information",
            service_error_code="InvalidInstanceId",
            service_message="Instance id is invalid",
            expected_params=info_params([I1]),
        )
        stub.add_response("describe_instance_information", info_page({I1: "Online"}), info_params([I1]))

        event = await run_to_end(agent_trigger([I1]))

        assert event["status"] == "success"
        assert f"{I1} (not registered)" in text_of(task_log)

    async def test_other_api_errors_end_in_an_error_event(self, stub):
        stub.add_client_error(
            "describe_instance_information",
            service_error_code="AccessDeniedException",
            service_message="not authorized to perform ssm:DescribeInstanceInformation",
        )

        event = await run_to_end(agent_trigger([I1]))

        assert event["status"] == "error"
        assert "AccessDeniedException" in event["message"]

    def test_run_sync_is_the_same_bounded_loop(self, stub):
        stub.add_response("describe_instance_information", info_page({}), info_params([I1]))
        stub.add_response("describe_instance_information", info_page({}), info_params([I1]))
        sleeps = []

        event = agent_trigger([I1], waiter_delay=7, waiter_max_attempts=2).run_sync(sleep=sleeps.append)

        assert event["status"] == "timeout"
        assert sleeps == [7]

    def test_serializes_and_rebuilds(self):
        trigger = agent_trigger(
            [I1, I2], aws_conn_id="fleet_aws", region_name="eu-west-1", botocore_config={"read_timeout": 5}
        )
        assert_rebuilds(trigger, "operators.fleet_ssm_triggers.FleetSsmAgentOnlineTrigger")
        assert trigger.serialize()[1]["instance_ids"] == [I1, I2]

    def test_hook_has_bounded_standard_retries(self):
        assert agent_trigger([I1]).hook.config.retries == DEFAULT_RETRIES


# -- run command --------------------------------------------------------------------------------


def list_params(command_id, token=None):
    params = {"CommandId": command_id, "Details": False, "MaxResults": 50}
    if token:
        params["NextToken"] = token
    return params


def listing(command_id, statuses: dict[str, str | tuple[str, str]], token=None):
    invocations = []
    for instance_id, status in statuses.items():
        status, details = status if isinstance(status, tuple) else (status, status)
        invocations.append(
            {"CommandId": command_id, "InstanceId": instance_id, "Status": status, "StatusDetails": details}
        )
    page = {"CommandInvocations": invocations}
    if token:
        page["NextToken"] = token
    return page


def add_invocation(stub, command_id, instance_id, status="Success", code=0, stdout="", stderr="", **extra):
    stub.add_response(
        "get_command_invocation",
        {
            "CommandId": command_id,
            "InstanceId": instance_id,
            "Status": status,
            "StatusDetails": status,
            "ResponseCode": code,
            "ExecutionStartDateTime": "2026-11-23T00:01:00.000Z",
            "ExecutionEndDateTime": "2026-11-23T00:01:42.500Z",
            "StandardOutputContent": stdout,
            "StandardErrorContent": stderr,
            **extra,
        },
        {"CommandId": command_id, "InstanceId": instance_id},
    )


def command_trigger(command_instances, **kwargs):
    kwargs.setdefault("waiter_delay", 0)
    kwargs.setdefault("waiter_max_attempts", 5)
    return FleetRunCommandTrigger(command_instances=command_instances, **kwargs)


class TestFleetRunCommandTrigger:
    async def test_early_empty_listing_is_pending_not_success(self, stub, task_log):
        stub.add_response("list_command_invocations", listing(CMD_A, {}), list_params(CMD_A))
        stub.add_response("list_command_invocations", listing(CMD_A, {I1: "InProgress"}), list_params(CMD_A))
        stub.add_response("list_command_invocations", listing(CMD_A, {I1: "Success"}), list_params(CMD_A))
        add_invocation(stub, CMD_A, I1, stdout="done\n")

        event = await run_to_end(command_trigger({CMD_A: [I1]}))

        assert event["status"] == "success"
        assert event["results"][I1]["status"] == "Success"
        assert f"{I1} (Pending (not listed yet))" in text_of(task_log)

    async def test_empty_listing_until_the_bound_is_a_timeout(self, stub):
        for _ in range(2):
            stub.add_response("list_command_invocations", listing(CMD_A, {}), list_params(CMD_A))

        event = await run_to_end(command_trigger({CMD_A: [I1]}, waiter_max_attempts=2))

        assert event["status"] == "timeout"
        assert I1 in event["message"]
        assert "not listed yet" in event["message"]

    async def test_in_progress_past_the_bound_is_a_timeout_naming_the_instance(self, stub):
        for _ in range(3):
            stub.add_response(
                "list_command_invocations",
                listing(CMD_A, {I1: "Success", I2: "InProgress", I3: "Failed"}),
                list_params(CMD_A),
            )

        event = await run_to_end(command_trigger({CMD_A: [I1, I2, I3]}, waiter_max_attempts=3))

        assert event["status"] == "timeout"
        assert f"still waiting on {I2} (InProgress); already failed: {I3} Failed" in event["message"]
        assert CMD_A in event["message"]
        assert "3 polls" in event["message"]

    async def test_exit_code_3_fails_naming_instance_status_and_code(self, stub):
        stub.add_response(
            "list_command_invocations", listing(CMD_A, {I1: "Success", I2: "Failed"}), list_params(CMD_A)
        )
        add_invocation(stub, CMD_A, I1, stdout="ok\n")
        add_invocation(
            stub, CMD_A, I2, status="Failed", code=3, stdout="step 1\nstep 2\n", stderr="job x: exit 3\n"
        )

        event = await run_to_end(command_trigger({CMD_A: [I1, I2]}))

        assert event["status"] == "failed"
        assert f"{I2} Failed, exit code 3" in event["message"]
        assert I1 not in event["message"]
        assert event["command_ids"] == [CMD_A]
        assert event["results"][I2] == {
            "command_id": CMD_A,
            "status": "Failed",
            "status_details": "Failed",
            "exit_code": 3,
            "duration_seconds": 42.5,
            "stdout_tail": "step 1\nstep 2",
            "stderr_tail": "job x: exit 3",
            "stdout_url": None,
            "stderr_url": None,
        }
        assert event["results"][I1]["exit_code"] == 0

    async def test_a_failure_still_waits_for_the_other_instances(self, stub, task_log):
        stub.add_response(
            "list_command_invocations",
            listing(CMD_A, {I1: ("TimedOut", "ExecutionTimedOut"), I2: "InProgress"}),
            list_params(CMD_A),
        )
        stub.add_response(
            "list_command_invocations",
            listing(CMD_A, {I1: ("TimedOut", "ExecutionTimedOut"), I2: "Success"}),
            list_params(CMD_A),
        )
        add_invocation(stub, CMD_A, I1, status="TimedOut", code=-1)
        add_invocation(stub, CMD_A, I2)

        event = await run_to_end(command_trigger({CMD_A: [I1, I2]}))

        assert event["status"] == "failed"
        assert f"{I1} TimedOut (ExecutionTimedOut), exit code -1" in event["message"]
        assert event["results"][I2]["status"] == "Success"
        assert f"already failed on {I1} TimedOut (ExecutionTimedOut)" in text_of(task_log)

    async def test_one_listing_per_unfinished_command_per_poll(self, stub):
        big = [iid(n) for n in range(50)]
        small = [iid(n) for n in range(50, 70)]
        # Poll 1: A lists everything in progress, B lists nothing yet.
        stub.add_response(
            "list_command_invocations", listing(CMD_A, dict.fromkeys(big, "InProgress")), list_params(CMD_A)
        )
        stub.add_response("list_command_invocations", listing(CMD_B, {}), list_params(CMD_B))
        # Poll 2: A is done; B has one instance still pending.
        stub.add_response(
            "list_command_invocations", listing(CMD_A, dict.fromkeys(big, "Success")), list_params(CMD_A)
        )
        stub.add_response(
            "list_command_invocations",
            listing(CMD_B, {**dict.fromkeys(small[:-1], "Success"), small[-1]: "Pending"}),
            list_params(CMD_B),
        )
        # Poll 3: only B is listed again, over two pages.
        stub.add_response(
            "list_command_invocations",
            listing(CMD_B, dict.fromkeys(small[:10], "Success"), token="t2"),
            list_params(CMD_B),
        )
        stub.add_response(
            "list_command_invocations",
            listing(CMD_B, dict.fromkeys(small[10:], "Success")),
            list_params(CMD_B, token="t2"),
        )
        for instance_id in big:
            add_invocation(stub, CMD_A, instance_id)
        for instance_id in small:
            add_invocation(stub, CMD_B, instance_id)

        event = await run_to_end(command_trigger({CMD_A: big, CMD_B: small}))

        assert event["status"] == "success"
        assert event["command_ids"] == [CMD_A, CMD_B]
        assert {result["command_id"] for result in event["results"].values()} == {CMD_A, CMD_B}
        assert len(event["results"]) == 70

    async def test_cancelling_is_waited_out(self, stub):
        stub.add_response("list_command_invocations", listing(CMD_A, {I1: "Cancelling"}), list_params(CMD_A))
        stub.add_response("list_command_invocations", listing(CMD_A, {I1: "Cancelled"}), list_params(CMD_A))
        add_invocation(stub, CMD_A, I1, status="Cancelled", code=-1)

        event = await run_to_end(command_trigger({CMD_A: [I1]}))

        assert event["status"] == "failed"
        assert f"{I1} Cancelled" in event["message"]

    async def test_unreadable_output_keeps_the_outcome(self, stub, task_log):
        stub.add_response("list_command_invocations", listing(CMD_A, {I1: "Success"}), list_params(CMD_A))
        stub.add_client_error(
            "get_command_invocation",
            service_error_code="InvalidPluginName",
            service_message="document has several plugins",
            expected_params={"CommandId": CMD_A, "InstanceId": I1},
        )

        event = await run_to_end(command_trigger({CMD_A: [I1]}))

        assert event["status"] == "success"
        assert event["results"][I1]["exit_code"] is None
        assert "InvalidPluginName" in text_of(task_log)

    async def test_api_error_while_listing_ends_in_an_error_event(self, stub):
        stub.add_client_error(
            "list_command_invocations",
            service_error_code="InvalidCommandId",
            service_message="command not found",
            expected_params=list_params(CMD_A),
        )

        event = await run_to_end(command_trigger({CMD_A: [I1]}))

        assert event["status"] == "error"
        assert "InvalidCommandId" in event["message"]

    async def test_tails_keep_the_last_lines_only(self, stub):
        stdout = "".join(f"line {n}\n" for n in range(1, 101))
        stub.add_response("list_command_invocations", listing(CMD_A, {I1: "Success"}), list_params(CMD_A))
        add_invocation(
            stub,
            CMD_A,
            I1,
            stdout=stdout,
            StandardOutputUrl="https://s3.amazonaws.com/logs/fleet/stdout",
        )

        event = await run_to_end(command_trigger({CMD_A: [I1]}, log_tail_lines=3))

        assert event["results"][I1]["stdout_tail"] == "line 98\nline 99\nline 100"
        assert event["results"][I1]["stdout_url"] == "https://s3.amazonaws.com/logs/fleet/stdout"

    async def test_on_kill_cancels_every_command_on_its_instances(self, stub, task_log):
        stub.add_response("cancel_command", {}, {"CommandId": CMD_A, "InstanceIds": [I1, I2]})
        stub.add_client_error(
            "cancel_command",
            service_error_code="InvalidCommandId",
            service_message="already finished",
            expected_params={"CommandId": CMD_B, "InstanceIds": [I3]},
        )

        await command_trigger({CMD_A: [I1, I2], CMD_B: [I3]}).on_kill()

        logged = text_of(task_log)
        assert f"Asked SSM to cancel command {CMD_A}" in logged
        assert f"Could not cancel SSM command {CMD_B} on {I3}: InvalidCommandId" in logged

    def test_serializes_and_rebuilds(self):
        trigger = command_trigger(
            {CMD_A: [I1, I2], CMD_B: [I3]}, log_tail_lines=7, aws_conn_id="fleet_aws", region_name="eu-west-1"
        )
        assert_rebuilds(trigger, "operators.fleet_ssm_triggers.FleetRunCommandTrigger")
        assert trigger.serialize()[1]["command_instances"] == {CMD_A: [I1, I2], CMD_B: [I3]}
        assert trigger.serialize()[1]["log_tail_lines"] == 7

    def test_refuses_an_empty_expectation(self):
        with pytest.raises(ValueError, match="command_instances"):
            command_trigger({})
        with pytest.raises(ValueError, match="command_instances"):
            command_trigger({CMD_A: []})
