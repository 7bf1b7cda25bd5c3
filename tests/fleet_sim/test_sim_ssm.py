"""SSM through the simulator: registration, commands that really run, their statuses and output."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError
from fleet_sim_testing import boot, events, invocation_status, ping_status, running, send, wait_ended
from fleet_testing import wait_for


class TestRegistration:
    def test_an_instance_is_online_only_after_the_registration_delay(self, make_sim):
        sim = make_sim(scenario={"registration_delay": 1.0})
        ssm = sim.client("ssm")
        instance_id = running(sim)
        running_at = time.monotonic()

        before = ping_status(ssm, instance_id)
        wait_for(lambda: ping_status(ssm, instance_id) == "Online", timeout=5)

        assert before is None  # never registered: not listed at all
        assert time.monotonic() - running_at == pytest.approx(1.0, abs=0.4)
        online = events(sim, instance_id, "ssm_online")[0]["t"]
        started = events(sim, instance_id, "state", to="running")[0]["t"]
        assert online - started == pytest.approx(1.0, abs=0.1)

    def test_a_role_s_registration_delay_fault_overrides_the_default(self, make_sim):
        sim = make_sim(
            roles=["tasks", "uniswap"],
            scenario={"faults": [{"kind": "registration_delay", "role": "uniswap", "seconds": 30}]},
        )
        tasks, uniswap = boot(sim, "tasks"), running(sim, "uniswap")
        time.sleep(0.6)

        assert ping_status(sim.client("ssm"), tasks) == "Online"
        assert ping_status(sim.client("ssm"), uniswap) is None

    def test_a_stopped_instance_shows_connection_lost_and_refuses_commands(self, sim):
        ssm = sim.client("ssm")
        instance_id = boot(sim)
        sim.client("ec2").stop_instances(InstanceIds=[instance_id])

        with pytest.raises(ClientError) as refused:
            send(ssm, instance_id, "echo never")

        assert ping_status(ssm, instance_id) == "ConnectionLost"
        assert refused.value.response["Error"]["Code"] == "InvalidInstanceId"
        assert instance_id in refused.value.response["Error"]["Message"]

    def test_describe_instance_information_pages_and_filters(self, make_sim):
        sim = make_sim(roles={"tasks": 6})
        ids = sim.instances_for("tasks")
        sim.client("ec2").start_instances(InstanceIds=ids)
        ssm = sim.client("ssm")
        wait_for(lambda: len(ssm.describe_instance_information()["InstanceInformationList"]) == 6)

        pages = list(
            ssm.get_paginator("describe_instance_information").paginate(PaginationConfig={"PageSize": 5})
        )
        filtered = ssm.describe_instance_information(
            InstanceInformationFilterList=[{"key": "InstanceIds", "valueSet": ids[:2]}]
        )

        assert [len(page["InstanceInformationList"]) for page in pages] == [5, 1]
        assert {info["InstanceId"] for info in filtered["InstanceInformationList"]} == set(ids[:2])
        info = filtered["InstanceInformationList"][0]
        assert (info["PingStatus"], info["PlatformType"], info["ResourceType"]) == (
            "Online",
            "Linux",
            "EC2Instance",
        )


class TestRunCommand:
    def test_a_command_runs_in_the_host_s_sandbox_and_succeeds_with_its_output(self, sim):
        ssm = sim.client("ssm")
        instance_id = boot(sim)

        command_id = send(
            ssm,
            instance_id,
            "echo hello from $(pwd)",
            "sleep 0.5",
            'echo "to stderr" >&2',
            "echo $AWS_ENDPOINT_URL",
        )

        invocation = wait_ended(ssm, command_id, instance_id)
        assert invocation["seen"][0] in ("Pending", "InProgress")
        assert "InProgress" in invocation["seen"]
        assert invocation["seen"][-1] == "Success"
        assert invocation["ResponseCode"] == 0
        sandbox = sim.host(instance_id).sandbox
        assert invocation["StandardOutputContent"] == f"hello from {sandbox}\n{sim.endpoint_url}\n"
        assert invocation["StandardErrorContent"] == "to stderr\n"
        assert invocation["ExecutionStartDateTime"] and invocation["ExecutionEndDateTime"]
        started = [e["t"] for e in events(sim, instance_id, "command_started", command_id=command_id)]
        ended = [e for e in events(sim, instance_id, "command_ended", command_id=command_id)]
        assert ended[0]["t"] - started[0] >= 0.5
        assert ended[0]["status"] == "Success"

    def test_a_non_zero_exit_fails_with_its_response_code(self, sim):
        ssm = sim.client("ssm")
        instance_id = boot(sim)

        command_id = send(ssm, instance_id, "echo about to fail", "exit 3")

        invocation = wait_ended(ssm, command_id, instance_id)
        assert (invocation["Status"], invocation["StatusDetails"], invocation["ResponseCode"]) == (
            "Failed",
            "Failed",
            3,
        )
        listed = ssm.list_command_invocations(CommandId=command_id, Details=True)["CommandInvocations"][0]
        assert listed["CommandPlugins"][0]["ResponseCode"] == 3
        assert listed["CommandPlugins"][0]["Output"] == "about to fail\n"
        assert ssm.list_commands(CommandId=command_id)["Commands"][0]["Status"] == "Failed"

    def test_the_execution_timeout_kills_a_hanging_command(self, sim):
        ssm = sim.client("ssm")
        instance_id = boot(sim)

        command_id = send(ssm, instance_id, "echo waiting", "sleep 300", executionTimeout="1")

        invocation = wait_ended(ssm, command_id, instance_id, timeout=10)
        assert (invocation["Status"], invocation["StatusDetails"]) == ("TimedOut", "ExecutionTimedOut")
        assert invocation["ResponseCode"] == 137
        assert invocation["StandardOutputContent"] == "waiting\n"
        wait_for(lambda: not sim.host(instance_id).pids(), timeout=5, what="the sleep to be killed")

    def test_cancel_command_stops_a_running_command(self, sim):
        ssm = sim.client("ssm")
        instance_id = boot(sim)
        command_id = send(ssm, instance_id, "sleep 300")
        wait_for(lambda: invocation_status(ssm, command_id, instance_id) == "InProgress")

        ssm.cancel_command(CommandId=command_id, InstanceIds=[instance_id])

        invocation = wait_ended(ssm, command_id, instance_id, timeout=5)
        assert invocation["Status"] == "Cancelled"
        assert not sim.host(instance_id).pids()

    def test_cancelling_an_unknown_command_is_refused(self, sim):
        with pytest.raises(ClientError) as refused:
            sim.client("ssm").cancel_command(CommandId="00000000-0000-0000-0000-000000000000")

        assert refused.value.response["Error"]["Code"] == "InvalidCommandId"

    def test_output_is_cut_as_ssm_cuts_it(self, sim):
        ssm = sim.client("ssm")
        instance_id = boot(sim)

        command_id = send(
            ssm,
            instance_id,
            "head -c 30000 /dev/zero | tr '\\0' o",
            "head -c 9000 /dev/zero | tr '\\0' e >&2",
        )

        invocation = wait_ended(ssm, command_id, instance_id)
        assert len(invocation["StandardOutputContent"]) == 24000
        assert len(invocation["StandardErrorContent"]) == 8000

    def test_output_goes_to_s3_when_asked(self, sim):
        ssm, s3 = sim.client("ssm"), sim.client("s3")
        s3.create_bucket(Bucket="ssm-output")
        instance_id = boot(sim)

        command_id = ssm.send_command(
            InstanceIds=[instance_id],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["echo to s3"]},
            OutputS3BucketName="ssm-output",
            OutputS3KeyPrefix="runs",
        )["Command"]["CommandId"]

        invocation = wait_ended(ssm, command_id, instance_id)
        key = f"runs/{command_id}/{instance_id}/awsrunShellScript/0.awsrunShellScript/stdout"
        assert s3.get_object(Bucket="ssm-output", Key=key)["Body"].read() == b"to s3\n"
        assert invocation["StandardOutputUrl"].endswith(f"/ssm-output/{key}")

    def test_other_documents_are_refused(self, sim):
        instance_id = boot(sim)

        with pytest.raises(ClientError) as refused:
            sim.client("ssm").send_command(InstanceIds=[instance_id], DocumentName="AWS-RunPatchBaseline")

        assert refused.value.response["Error"]["Code"] == "InvalidDocument"

    def test_what_the_emulation_does_not_answer_goes_to_moto(self, sim):
        ssm = sim.client("ssm")

        ssm.put_parameter(Name="/fleet/test", Value="42", Type="String")

        assert ssm.get_parameter(Name="/fleet/test")["Parameter"]["Value"] == "42"
