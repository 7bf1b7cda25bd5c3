"""FleetRunCommandOperator against a stubbed SSM client (moto's send_command always succeeds).

The Stubber checks each call's exact arguments and order, refuses calls nobody expected, and
the fixture fails a test that leaves an expected call unmade.
"""

from __future__ import annotations

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from fleet_operator_testing import I1, I2, iid, text_of
from operators.fleet_aws import DEFAULT_RETRIES, FleetError
from operators.fleet_ssm_operators import FleetRunCommandOperator
from operators.fleet_ssm_triggers import FleetRunCommandTrigger
from operators.fleet_wait import defer_timeout

CMD_A = "aaaaaaaa-0000-4000-8000-000000000001"
CMD_B = "bbbbbbbb-0000-4000-8000-000000000002"
CMD_C = "cccccccc-0000-4000-8000-000000000003"
COMMANDS = ["echo start", "/opt/fleet/agent run --date 2026-11-23"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_operator(instance_ids, **kwargs) -> FleetRunCommandOperator:
    kwargs.setdefault("parameters", {"commands": COMMANDS})
    kwargs.setdefault("waiter_delay", 0)
    kwargs.setdefault("waiter_max_attempts", 5)
    kwargs.setdefault("deferrable", False)
    op = FleetRunCommandOperator(task_id="run_agent", instance_ids=instance_ids, **kwargs)
    clock = FakeClock()
    op.clock = clock
    op.sleep = clock.sleep
    return op


def send_params(instance_ids, parameters=None, **extra):
    return {
        "DocumentName": "AWS-RunShellScript",
        "InstanceIds": instance_ids,
        "Parameters": parameters or {"commands": COMMANDS},
        **extra,
    }


def add_send(stub, command_id, instance_ids, **params):
    stub.add_response(
        "send_command",
        {"Command": {"CommandId": command_id, "InstanceIds": instance_ids}},
        send_params(instance_ids, **params),
    )


def add_listing(stub, command_id, statuses: dict[str, str]):
    stub.add_response(
        "list_command_invocations",
        {
            "CommandInvocations": [
                {"CommandId": command_id, "InstanceId": instance_id, "Status": status}
                for instance_id, status in statuses.items()
            ]
        },
        {"CommandId": command_id, "Details": False, "MaxResults": 50},
    )


def add_invocation(stub, command_id, instance_id, status="Success", code=0, stdout="", stderr=""):
    stub.add_response(
        "get_command_invocation",
        {
            "CommandId": command_id,
            "InstanceId": instance_id,
            "Status": status,
            "ResponseCode": code,
            "ExecutionStartDateTime": "2026-11-23T00:01:00.000Z",
            "ExecutionEndDateTime": "2026-11-23T00:01:30.000Z",
            "StandardOutputContent": stdout,
            "StandardErrorContent": stderr,
        },
        {"CommandId": command_id, "InstanceId": instance_id},
    )


def add_invalid_instance(stub, instance_ids):
    stub.add_client_error(
        "send_command",
        service_error_code="InvalidInstanceId",
        service_message="Instances not in a valid state for account",
        expected_params=send_params(instance_ids),
    )


class TestFleetRunCommandOperator:
    def test_sends_120_instances_as_three_commands_of_50_50_20(self, stub, ti):
        ids = [iid(n) for n in range(120)]
        add_send(stub, CMD_A, ids[:50])
        add_send(stub, CMD_B, ids[50:100])
        add_send(stub, CMD_C, ids[100:])

        result = make_operator(ids, wait_for_completion=False).execute({"ti": ti})

        assert ti.xcom["command_ids"] == [CMD_A, CMD_B, CMD_C]
        assert result[ids[0]] == {"command_id": CMD_A}
        assert result[ids[99]] == {"command_id": CMD_B}
        assert result[ids[119]] == {"command_id": CMD_C}

    def test_request_carries_timeout_comment_and_s3_output(self, stub, ti):
        add_send(
            stub,
            CMD_A,
            [I1],
            parameters={"commands": COMMANDS, "executionTimeout": ["900"]},
            Comment="x" * 100,
            TimeoutSeconds=600,
            OutputS3BucketName="fleet-logs",
            OutputS3KeyPrefix="ssm/2026-11-23",
        )

        make_operator(
            I1,
            wait_for_completion=False,
            execution_timeout_seconds=900,
            delivery_timeout_seconds=600,
            comment="x" * 150,
            output_s3_bucket="fleet-logs",
            output_s3_prefix="ssm/2026-11-23",
        ).execute({"ti": ti})

    def test_explicit_execution_timeout_parameter_wins(self, stub, ti):
        parameters = {"commands": COMMANDS, "executionTimeout": ["60"]}
        add_send(stub, CMD_A, [I1], parameters=parameters)

        make_operator(
            [I1], parameters=parameters, execution_timeout_seconds=900, wait_for_completion=False
        ).execute({"ti": ti})

    def test_execution_timeout_is_refused_for_other_documents(self, stub, ti):
        op = make_operator(
            [I1],
            document_name="Fleet-RunAgent",
            parameters={"date": "2026-11-23"},
            execution_timeout_seconds=60,
        )
        with pytest.raises(ValueError, match="Fleet-RunAgent"):
            op.execute({"ti": ti})

    def test_a_shell_script_without_commands_is_refused(self, stub, ti):
        with pytest.raises(ValueError, match="commands"):
            make_operator([I1], parameters={}).execute({"ti": ti})

    def test_invalid_instance_id_is_retried_until_ssm_accepts(self, stub, ti, task_log):
        add_invalid_instance(stub, [I1])
        add_invalid_instance(stub, [I1])
        add_send(stub, CMD_A, [I1])
        op = make_operator([I1], wait_for_completion=False, send_retry_seconds=30, send_retry_delay=10)

        result = op.execute({"ti": ti})

        assert result == {I1: {"command_id": CMD_A}}
        assert op.clock.sleeps == [10, 10]
        assert f"SSM does not accept {I1} yet (InvalidInstanceId" in text_of(task_log)

    def test_invalid_instance_id_past_send_retry_seconds_fails_naming_the_instance(self, stub, ti):
        for _ in range(4):  # at 0, 10, 20 and 30 s
            add_invalid_instance(stub, [I1])
        op = make_operator([I1], send_retry_seconds=30, send_retry_delay=10)

        with pytest.raises(FleetError, match=rf"{I1} with InvalidInstanceId for 30 s"):
            op.execute({"ti": ti})
        assert op.clock.sleeps == [10, 10, 10]
        assert "command_ids" not in ti.xcom

    def test_other_send_errors_are_not_retried(self, stub, ti):
        stub.add_client_error(
            "send_command", service_error_code="AccessDeniedException", expected_params=send_params([I1])
        )
        op = make_operator([I1])

        with pytest.raises(Exception, match="AccessDeniedException"):
            op.execute({"ti": ti})
        assert op.clock.sleeps == []

    def test_a_failed_later_batch_cancels_the_batches_already_sent(self, stub, ti):
        ids = [iid(n) for n in range(60)]
        add_send(stub, CMD_A, ids[:50])
        stub.add_client_error(
            "send_command", service_error_code="AccessDeniedException", expected_params=send_params(ids[50:])
        )
        stub.add_response("cancel_command", {}, {"CommandId": CMD_A, "InstanceIds": ids[:50]})

        with pytest.raises(Exception, match="AccessDeniedException"):
            make_operator(ids).execute({"ti": ti})

    def test_waits_then_logs_tails_and_returns_per_instance_results(self, stub, ti, task_log):
        add_send(stub, CMD_A, [I1, I2])
        add_listing(stub, CMD_A, {})
        add_listing(stub, CMD_A, {I1: "InProgress", I2: "Success"})
        add_listing(stub, CMD_A, {I1: "Success", I2: "Success"})
        add_invocation(stub, CMD_A, I1, stdout="boot\njob a ok\njob b ok\n", stderr="warning: slow disk\n")
        add_invocation(stub, CMD_A, I2, stdout="nothing to do\n")

        result = make_operator([I1, I2], log_tail_lines=2).execute({"ti": ti})

        assert result[I1] == {
            "command_id": CMD_A,
            "status": "Success",
            "status_details": None,
            "exit_code": 0,
            "duration_seconds": 30.0,
            "stdout_tail": "job a ok\njob b ok",
            "stderr_tail": "warning: slow disk",
            "stdout_url": None,
            "stderr_url": None,
        }
        assert result[I2]["stdout_tail"] == "nothing to do"
        assert ti.xcom == {"command_ids": [CMD_A]}
        logged = text_of(task_log)
        assert f"{I1} stdout (last 2 lines):\njob a ok\njob b ok" in logged
        assert f"{I1} stderr (last 2 lines):\nwarning: slow disk" in logged
        assert f"{I2} stdout (last 2 lines):\nnothing to do" in logged
        assert "boot" not in logged

    def test_exit_code_3_fails_naming_the_instance_and_keeps_the_tails(self, stub, ti, task_log):
        add_send(stub, CMD_A, [I1, I2])
        add_listing(stub, CMD_A, {I1: "Success", I2: "Failed"})
        add_invocation(stub, CMD_A, I1, stdout="fine\n")
        add_invocation(stub, CMD_A, I2, status="Failed", code=3, stderr="orders job: broker refused\n")

        with pytest.raises(FleetError) as failure:
            make_operator([I1, I2]).execute({"ti": ti})

        assert f"{I2} Failed, exit code 3" in str(failure.value)
        assert f"{I1} " not in str(failure.value)
        assert ti.xcom["results"][I2]["exit_code"] == 3
        assert ti.xcom["results"][I2]["stderr_tail"] == "orders job: broker refused"
        assert f"{I2} stderr (last 20 lines):\norders job: broker refused" in text_of(task_log)
        assert {
            "event": f"{I2}: Failed, exit code 3 after 30.0 s (command {CMD_A})",
            "log_level": "error",
        } in task_log

    def test_still_running_past_the_bound_times_out_and_cancels(self, stub, ti):
        add_send(stub, CMD_A, [I1])
        add_listing(stub, CMD_A, {I1: "InProgress"})
        add_listing(stub, CMD_A, {I1: "InProgress"})
        stub.add_response("cancel_command", {}, {"CommandId": CMD_A, "InstanceIds": [I1]})

        with pytest.raises(FleetError, match=rf"timeout: .*{I1} \(InProgress\)"):
            make_operator([I1], waiter_max_attempts=2).execute({"ti": ti})

    def test_timeout_without_cancel_on_timeout_leaves_the_command(self, stub, ti):
        add_send(stub, CMD_A, [I1])
        add_listing(stub, CMD_A, {})

        with pytest.raises(FleetError, match="timeout"):
            make_operator([I1], waiter_max_attempts=1, cancel_on_timeout=False).execute({"ti": ti})

    def test_on_kill_while_waiting_cancels_the_sent_command(self, stub, ti):
        add_send(stub, CMD_A, [I1])
        add_listing(stub, CMD_A, {I1: "InProgress"})
        stub.add_response("cancel_command", {}, {"CommandId": CMD_A, "InstanceIds": [I1]})
        add_listing(stub, CMD_A, {I1: "Cancelled"})
        add_invocation(stub, CMD_A, I1, status="Cancelled", code=-1)
        op = make_operator([I1])
        # The user kills the task between two polls.
        op.sleep = lambda seconds: op.on_kill()

        with pytest.raises(FleetError, match=rf"{I1} Cancelled"):
            op.execute({"ti": ti})

    def test_on_kill_before_anything_was_sent_calls_nothing(self, stub):
        make_operator([I1]).on_kill()

    def test_deferrable_sends_then_defers_with_pairs_and_an_explicit_timeout(self, stub, ti):
        ids = [iid(n) for n in range(60)]
        add_send(stub, CMD_A, ids[:50])
        add_send(stub, CMD_B, ids[50:])
        op = make_operator(ids, deferrable=True, waiter_delay=20, waiter_max_attempts=90, log_tail_lines=5)

        with pytest.raises(TaskDeferred) as deferred:
            op.execute({"ti": ti})

        trigger = deferred.value.trigger
        assert isinstance(trigger, FleetRunCommandTrigger)
        assert trigger.command_instances == {CMD_A: ids[:50], CMD_B: ids[50:]}
        assert (trigger.waiter_delay, trigger.waiter_max_attempts, trigger.log_tail_lines) == (20, 90, 5)
        assert deferred.value.method_name == "execute_complete"
        assert deferred.value.timeout == defer_timeout(20, 90)
        assert deferred.value.kwargs == {"command_instances": {CMD_A: ids[:50], CMD_B: ids[50:]}}
        assert ti.xcom["command_ids"] == [CMD_A, CMD_B]

    async def test_deferred_run_resumes_in_a_fresh_operator(self, stub, ti, task_log):
        add_send(stub, CMD_A, [I1])
        with pytest.raises(TaskDeferred) as deferred:
            make_operator([I1], deferrable=True).execute({"ti": ti})
        add_listing(stub, CMD_A, {I1: "Success"})
        add_invocation(stub, CMD_A, I1, stdout="all jobs done\n")
        events = [event async for event in deferred.value.trigger.run()]

        # The worker that resumes the task is a new process: nothing survives but the kwargs.
        result = make_operator([I1], deferrable=True).execute_complete(
            {"ti": ti}, event=events[0].payload, **deferred.value.kwargs
        )

        assert result[I1]["stdout_tail"] == "all jobs done"
        assert f"{I1} stdout (last 20 lines):\nall jobs done" in text_of(task_log)

    def test_deferred_timeout_cancels_what_still_runs(self, stub, ti):
        stub.add_response("cancel_command", {}, {"CommandId": CMD_A, "InstanceIds": [I1]})
        event = {"status": "timeout", "message": f"still waiting on {I1} (InProgress)"}

        with pytest.raises(FleetError, match=rf"Run Command of AWS-RunShellScript timeout: .*{I1}"):
            make_operator([I1], deferrable=True).execute_complete(
                {"ti": ti}, event=event, command_instances={CMD_A: [I1]}
            )

    def test_no_event_is_a_failure(self, stub, ti):
        with pytest.raises(FleetError, match="no event"):
            make_operator([I1]).execute_complete({"ti": ti}, event=None)

    def test_hook_has_bounded_standard_retries(self):
        op = make_operator([I1], botocore_config={"read_timeout": 5})
        assert op.hook.config.retries == DEFAULT_RETRIES
        assert op.hook.config.read_timeout == 5

    def test_template_fields(self):
        assert {
            "instance_ids",
            "parameters",
            "document_name",
            "comment",
            "aws_conn_id",
            "region_name",
        } <= set(FleetRunCommandOperator.template_fields)
