"""EC2 through the simulator's endpoint: moto's API, AWS's timing, and the injected faults."""

from __future__ import annotations

import time

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from fleet_sim_testing import boot, described, events, running, send, wait_ended
from fleet_testing import wait_for


def state_of(ec2, instance_id: str) -> str:
    return described(ec2, instance_id)["State"]["Name"]


def no_retries(sim, service: str = "ec2"):
    return sim.client(service, config=Config(retries={"mode": "standard", "total_max_attempts": 1}))


class TestInstances:
    def test_the_fleet_config_gives_each_role_and_the_signer_a_stopped_instance(self, make_sim):
        sim = make_sim(fleet_config="dags/fleet.yaml")
        ec2 = sim.client("ec2")

        reservations = ec2.describe_instances()["Reservations"]

        found = {
            {tag["Key"]: tag["Value"] for tag in instance["Tags"]}["Name"]: instance
            for reservation in reservations
            for instance in reservation["Instances"]
        }
        assert sorted(found) == ["hyperliquid", "signer", "tasks", "uniswap"]
        assert {instance["State"]["Name"] for instance in found.values()} == {"stopped"}
        assert found["tasks"]["InstanceId"] == sim.instance_for("tasks")
        assert sim.region == "us-east-1"

    def test_start_goes_through_pending_to_running_after_the_transition_delay(self, sim):
        ec2 = sim.client("ec2")
        instance_id = sim.instance_for("tasks")

        response = ec2.start_instances(InstanceIds=[instance_id])

        change = response["StartingInstances"][0]
        assert (change["PreviousState"]["Name"], change["CurrentState"]["Name"]) == ("stopped", "pending")
        assert state_of(ec2, instance_id) == "pending"
        waited = sim.wait_for_state(instance_id, "running")
        assert 0.1 < waited < 2
        assert state_of(ec2, instance_id) == "running"
        assert sim.fleet.timeline.states(instance_id) == ["stopped", "pending", "running"]

    def test_stop_goes_through_stopping_and_a_repeated_start_or_stop_changes_nothing(self, sim):
        ec2 = sim.client("ec2")
        instance_id = sim.instance_for("tasks")
        ec2.start_instances(InstanceIds=[instance_id])
        again = ec2.start_instances(InstanceIds=[instance_id])["StartingInstances"][0]
        sim.wait_for_state(instance_id, "running")

        stopping = ec2.stop_instances(InstanceIds=[instance_id])["StoppingInstances"][0]
        repeated = ec2.stop_instances(InstanceIds=[instance_id])["StoppingInstances"][0]

        assert again["CurrentState"]["Name"] == "pending"
        assert stopping["CurrentState"]["Name"] == "stopping"
        assert repeated["CurrentState"]["Name"] == "stopping"
        sim.wait_for_state(instance_id, "stopped")
        assert described(ec2, instance_id)["StateReason"]["Code"] == "Client.UserInitiatedShutdown"

    def test_transitional_states_refuse_with_incorrect_instance_state(self, sim):
        ec2 = sim.client("ec2")
        instance_id = sim.instance_for("tasks")
        ec2.start_instances(InstanceIds=[instance_id])

        with pytest.raises(ClientError) as stop_pending:
            ec2.stop_instances(InstanceIds=[instance_id])
        sim.wait_for_state(instance_id, "running")
        ec2.stop_instances(InstanceIds=[instance_id])
        with pytest.raises(ClientError) as start_stopping:
            ec2.start_instances(InstanceIds=[instance_id])

        assert stop_pending.value.response["Error"]["Code"] == "IncorrectInstanceState"
        assert instance_id in stop_pending.value.response["Error"]["Message"]
        assert start_stopping.value.response["Error"]["Code"] == "IncorrectInstanceState"

    def test_unknown_instances_get_moto_s_not_found_error(self, sim):
        with pytest.raises(ClientError) as error:
            sim.client("ec2").start_instances(InstanceIds=["i-0123456789abcdef0"])

        assert error.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"

    def test_instances_made_with_run_instances_become_hosts_and_boot_through_pending(self, sim):
        ec2 = sim.client("ec2")
        image = ec2.describe_images()["Images"][0]["ImageId"]

        created = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]

        assert state_of(ec2, created) == "pending"
        sim.wait_for_state(created, "running")
        assert sim.host(created).sandbox.is_dir()


class TestStoppedInstancesRunNothing:
    def test_stopping_an_instance_kills_its_detached_processes(self, sim):
        ec2, ssm = sim.client("ec2"), sim.client("ssm")
        instance_id = boot(sim)
        command_id = send(ssm, instance_id, "setsid nohup sleep 300 >/dev/null 2>&1 &", "echo started")
        wait_ended(ssm, command_id, instance_id)
        host = sim.host(instance_id)
        survivors = wait_for(host.pids, what="the detached sleep")

        ec2.stop_instances(InstanceIds=[instance_id])

        wait_for(lambda: not host.pids(), timeout=5, what="the host's processes to die")
        signalled = events(sim, instance_id, "processes_signalled")
        assert signalled[0]["signal"] == "SIGTERM"
        assert set(survivors) <= set(signalled[0]["pids"])

    def test_a_command_running_when_its_instance_stops_fails(self, sim):
        ec2, ssm = sim.client("ec2"), sim.client("ssm")
        instance_id = boot(sim)
        command_id = send(ssm, instance_id, "sleep 300")
        wait_for(lambda: events(sim, instance_id, "command_started"))

        ec2.stop_instances(InstanceIds=[instance_id])

        invocation = wait_ended(ssm, command_id, instance_id)
        assert invocation["Status"] == "Failed"
        assert invocation["ResponseCode"] == 128 + 15  # SIGTERM from the shutdown
        assert (
            ssm.describe_instance_information()["InstanceInformationList"][0]["PingStatus"]
            == "ConnectionLost"
        )


class TestFaults:
    def test_throttling_refuses_the_first_calls_and_botocore_recovers(self, make_sim):
        sim = make_sim(scenario={"faults": [{"kind": "throttle", "operation": "StartInstances", "count": 2}]})
        instance_id = sim.instance_for("tasks")

        with pytest.raises(ClientError) as refused:
            no_retries(sim).start_instances(InstanceIds=[instance_id])
        retrying = sim.client("ec2", config=Config(retries={"mode": "standard", "total_max_attempts": 5}))
        response = retrying.start_instances(InstanceIds=[instance_id])

        assert refused.value.response["Error"]["Code"] == "RequestLimitExceeded"
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert response["ResponseMetadata"]["RetryAttempts"] == 1
        assert response["StartingInstances"][0]["CurrentState"]["Name"] == "pending"
        assert [entry["code"] for entry in sim.timeline(event="fault")] == ["RequestLimitExceeded"] * 2

    def test_ssm_throttling_answers_throttling_exception(self, make_sim):
        sim = make_sim(
            scenario={
                "faults": [{"kind": "throttle", "operation": "DescribeInstanceInformation", "count": 1}]
            }
        )

        with pytest.raises(ClientError) as refused:
            no_retries(sim, "ssm").describe_instance_information()

        assert refused.value.response["Error"]["Code"] == "ThrottlingException"
        assert no_retries(sim, "ssm").describe_instance_information()["InstanceInformationList"] == []

    def test_capacity_error_for_one_instance_leaves_the_others_startable(self, make_sim):
        sim = make_sim(roles={"tasks": 2})
        first, second = sim.instances_for("tasks")
        sim.inject({"kind": "capacity", "instance": first})
        ec2 = no_retries(sim)

        with pytest.raises(ClientError) as refused:
            ec2.start_instances(InstanceIds=[first])
        ec2.start_instances(InstanceIds=[second])

        assert refused.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
        assert first in refused.value.response["Error"]["Message"]
        assert sim.state(first) == "stopped"
        sim.wait_for_state(second, "running")
        assert events(sim, first, "fault", fault="capacity")

    def test_a_capacity_fault_with_a_count_ends(self, make_sim):
        sim = make_sim(scenario={"faults": [{"kind": "capacity", "role": "tasks", "count": 1}]})
        ec2 = no_retries(sim)
        instance_id = sim.instance_for("tasks")

        with pytest.raises(ClientError):
            ec2.start_instances(InstanceIds=[instance_id])
        ec2.start_instances(InstanceIds=[instance_id])

        sim.wait_for_state(instance_id, "running")

    def test_stuck_stopping_holds_the_instance_in_stopping(self, make_sim):
        sim = make_sim(scenario={"faults": [{"kind": "stuck_stopping", "role": "tasks", "seconds": 1.5}]})
        ec2, instance_id = sim.client("ec2"), running(sim)

        ec2.stop_instances(InstanceIds=[instance_id])
        time.sleep(1.0)

        assert state_of(ec2, instance_id) == "stopping"
        sim.wait_for_state(instance_id, "stopped", timeout=5)
        changes = {entry["to"]: entry["t"] for entry in sim.timeline(instance_id, "state")}
        assert changes["stopped"] - changes["stopping"] == pytest.approx(1.5, abs=0.3)

    def test_a_forced_stop_ends_a_stuck_stop(self, make_sim):
        sim = make_sim(scenario={"faults": [{"kind": "stuck_stopping", "role": "tasks", "seconds": 60}]})
        ec2, instance_id = sim.client("ec2"), running(sim)
        ec2.stop_instances(InstanceIds=[instance_id])

        ec2.stop_instances(InstanceIds=[instance_id], Force=True)

        assert sim.wait_for_state(instance_id, "stopped", timeout=5) < 2
