"""FleetRunCommandOperator(reuse_in_flight=True): a retried task never sends its command twice.

A retry (or a cleared task) first lists the commands on each instance; one of the same document
and comment still pending or running is the earlier try's, and is watched instead of re-sent.
The Stubber checks each call's arguments and order and refuses any call nobody expected.
"""

from __future__ import annotations

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from fleet_operator_testing import I1, I2, text_of
from operators.fleet_ssm_operators import FleetRunCommandOperator

OLD = "0ld00000-0000-4000-8000-000000000001"
NEW = "ne000000-0000-4000-8000-000000000002"
PRIOR = "a1100000-0000-4000-8000-000000000003"
COMMANDS = ["python3 -m instance_agent run --role tasks --date 2026-11-23"]
COMMENT = "fleet_daily tasks 2026-11-23"
DOCUMENT = "AWS-RunShellScript"


def make_operator(instance_ids, **kwargs) -> FleetRunCommandOperator:
    kwargs.setdefault("parameters", {"commands": COMMANDS})
    kwargs.setdefault("comment", COMMENT)
    kwargs.setdefault("reuse_in_flight", True)
    kwargs.setdefault("waiter_delay", 0)
    kwargs.setdefault("waiter_max_attempts", 3)
    kwargs.setdefault("deferrable", False)
    op = FleetRunCommandOperator(task_id="run_agent", instance_ids=instance_ids, **kwargs)
    op.sleep = lambda seconds: None
    return op


def command(command_id, instance_ids, status, comment=COMMENT, document=DOCUMENT):
    return {
        "CommandId": command_id,
        "DocumentName": document,
        "Comment": comment,
        "InstanceIds": instance_ids,
        "Status": status,
    }


def add_list_commands(stub, instance_id, commands):
    stub.add_response("list_commands", {"Commands": commands}, {"InstanceId": instance_id})


def add_send(stub, command_id, instance_ids, comment=COMMENT):
    stub.add_response(
        "send_command",
        {"Command": {"CommandId": command_id, "InstanceIds": instance_ids}},
        {
            "DocumentName": DOCUMENT,
            "InstanceIds": instance_ids,
            "Parameters": {"commands": COMMANDS},
            "Comment": comment,
        },
    )


def add_finished(stub, command_id, instance_ids, code=0):
    stub.add_response(
        "list_command_invocations",
        {
            "CommandInvocations": [
                {"CommandId": command_id, "InstanceId": i, "Status": "Success"} for i in instance_ids
            ]
        },
        {"CommandId": command_id, "Details": False, "MaxResults": 50},
    )
    for instance_id in instance_ids:
        stub.add_response(
            "get_command_invocation",
            {"CommandId": command_id, "InstanceId": instance_id, "Status": "Success", "ResponseCode": code},
            {"CommandId": command_id, "InstanceId": instance_id},
        )


class TestFleetRunCommandOperatorReuseInFlight:
    @pytest.mark.parametrize("status", ["Pending", "InProgress", "Delayed"])
    def test_a_command_still_running_is_watched_not_sent_again(self, stub, ti, task_log, status):
        add_list_commands(stub, I1, [command(OLD, [I1], status)])
        add_finished(stub, OLD, [I1])  # no send_command: the Stubber would refuse it

        result = make_operator([I1]).execute({"ti": ti})

        assert ti.xcom["command_ids"] == [OLD]
        assert result[I1]["command_id"] == OLD
        assert result[I1]["status"] == "Success"
        assert (
            f"AWS-RunShellScript still runs on {I1} as command {OLD} ({status}) from an earlier try: "
            "watching it instead of sending it again"
        ) in text_of(task_log)

    @pytest.mark.parametrize(
        "earlier",
        [
            pytest.param(command(OLD, [I1], "Success"), id="finished"),
            pytest.param(command(OLD, [I1], "Failed"), id="failed"),
            pytest.param(
                command(OLD, [I1], "InProgress", comment="fleet_daily tasks 2026-11-22"), id="other-date"
            ),
            pytest.param(command(OLD, [I1], "InProgress", document="AWS-RunPatchBaseline"), id="other-doc"),
        ],
    )
    def test_anything_else_is_sent(self, stub, ti, earlier):
        add_list_commands(stub, I1, [earlier])
        add_send(stub, NEW, [I1])
        add_finished(stub, NEW, [I1])

        result = make_operator([I1]).execute({"ti": ti})

        assert ti.xcom["command_ids"] == [NEW]
        assert result[I1]["command_id"] == NEW

    def test_first_try_lists_nothing_and_sends(self, stub, ti):
        add_list_commands(stub, I1, [])
        add_send(stub, NEW, [I1])

        assert make_operator([I1], wait_for_completion=False).execute({"ti": ti}) == {I1: {"command_id": NEW}}

    def test_only_the_instances_without_one_in_flight_are_sent(self, stub, ti):
        add_list_commands(stub, I1, [command(PRIOR, [I1], "Success"), command(OLD, [I1, I2], "InProgress")])
        add_list_commands(stub, I2, [])
        add_send(stub, NEW, [I2])

        result = make_operator([I1, I2], wait_for_completion=False).execute({"ti": ti})

        assert ti.xcom["command_ids"] == [OLD, NEW]
        assert result == {I1: {"command_id": OLD}, I2: {"command_id": NEW}}

    def test_everything_in_flight_sends_nothing(self, stub, ti):
        add_list_commands(stub, I1, [command(OLD, [I1, I2], "InProgress")])
        add_list_commands(stub, I2, [command(OLD, [I1, I2], "Pending")])

        result = make_operator([I1, I2], wait_for_completion=False).execute({"ti": ti})

        assert result == {I1: {"command_id": OLD}, I2: {"command_id": OLD}}

    def test_the_comment_is_matched_as_ssm_stored_it(self, stub, ti):
        # SendCommand keeps at most 100 characters of a comment; the match must use the same cut.
        long_comment = "fleet_daily " + "x" * 120
        add_list_commands(stub, I1, [command(OLD, [I1], "InProgress", comment=long_comment[:100])])

        result = make_operator([I1], comment=long_comment, wait_for_completion=False).execute({"ti": ti})

        assert result == {I1: {"command_id": OLD}}

    def test_deferred_wait_watches_the_adopted_command(self, stub, ti):
        add_list_commands(stub, I1, [command(OLD, [I1], "InProgress")])
        add_list_commands(stub, I2, [])
        add_send(stub, NEW, [I2])

        with pytest.raises(TaskDeferred) as deferred:
            make_operator([I1, I2], deferrable=True).execute({"ti": ti})

        assert deferred.value.trigger.command_instances == {OLD: [I1], NEW: [I2]}
        assert deferred.value.kwargs == {"command_instances": {OLD: [I1], NEW: [I2]}}

    def test_on_kill_cancels_the_adopted_command_too(self, stub, ti):
        add_list_commands(stub, I1, [command(OLD, [I1], "InProgress")])
        add_list_commands(stub, I2, [])
        add_send(stub, NEW, [I2])
        op = make_operator([I1, I2], wait_for_completion=False)
        op.execute({"ti": ti})
        stub.add_response("cancel_command", {}, {"CommandId": OLD, "InstanceIds": [I1]})
        stub.add_response("cancel_command", {}, {"CommandId": NEW, "InstanceIds": [I2]})

        op.on_kill()

    def test_without_reuse_nothing_is_listed(self, stub, ti):
        add_send(stub, NEW, [I1])  # a list_commands call would be refused by the Stubber

        make_operator([I1], reuse_in_flight=False, wait_for_completion=False).execute({"ti": ti})

    def test_reuse_needs_a_comment_that_identifies_the_run(self):
        with pytest.raises(ValueError, match="reuse_in_flight needs a comment that identifies the run"):
            make_operator([I1], comment=None)
