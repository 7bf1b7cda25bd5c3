"""The simulator's API call log: what benchmarks count, by operation and by caller."""

from __future__ import annotations

import json
import urllib.request

import pytest
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError

from fleet_sim.timeline import caller_of


class TestApiCallLog:
    def test_each_call_is_logged_with_its_operation_status_and_instance_count(self, make_sim):
        sim = make_sim(roles={"tasks": 2})
        ec2 = sim.client("ec2")
        ids = sim.instances_for("tasks")
        began = sim.api_calls()[-1]["t"]

        ec2.describe_instances(InstanceIds=ids)
        ec2.start_instances(InstanceIds=ids[:1])
        sim.client("ssm").describe_instance_information()

        calls = [call for call in sim.api_calls(since=began) if call["t"] > began]
        assert [(c["service"], c["operation"], c["instances"], c["status"]) for c in calls] == [
            ("ec2", "DescribeInstances", 2, 200),
            ("ec2", "StartInstances", 1, 200),
            ("ssm", "DescribeInstanceInformation", None, 200),
        ]
        assert {call["caller"] for call in calls} == {None}

    def test_a_refused_call_is_logged_with_its_error_status(self, make_sim):
        sim = make_sim()
        sim.inject({"kind": "throttle", "operation": "DescribeInstances", "count": 1})
        ec2 = sim.client("ec2", config=Config(retries={"mode": "standard", "max_attempts": 3}))

        ec2.describe_instances(InstanceIds=[sim.instance_for("tasks")])

        statuses = [c["status"] for c in sim.api_calls() if c["operation"] == "DescribeInstances"]
        assert statuses == [503, 200]

    def test_a_slow_reply_is_carried_out_before_its_answer_is_lost(self, make_sim):
        # The caller gives up (is killed) while the answer is held: the stop happened all the same.
        sim = make_sim()
        instance = sim.instance_for("tasks")
        sim.client("ec2").start_instances(InstanceIds=[instance])
        sim.wait_for_state(instance, "running")
        sim.inject({"kind": "slow_reply", "operation": "StopInstances", "seconds": 5})
        impatient = sim.client("ec2", config=Config(read_timeout=1, retries={"total_max_attempts": 1}))

        with pytest.raises(ReadTimeoutError):
            impatient.stop_instances(InstanceIds=[instance])

        assert sim.state(instance) in ("stopping", "stopped")
        assert [c["status"] for c in sim.api_calls() if c["operation"] == "StopInstances"] == [200]
        assert [e["fault"] for e in sim.timeline(event="fault")] == ["slow_reply"]
        # Its count was one: the next call is answered at once.
        sim.client("ec2", config=Config(read_timeout=2)).describe_instances(InstanceIds=[instance])
        impatient.stop_instances(InstanceIds=[instance])

    def test_the_control_endpoint_serves_the_calls_since_a_time(self, make_sim):
        sim = make_sim()
        sim.client("ec2").describe_instances()
        cut = sim.api_calls()[-1]["t"]
        sim.client("ec2").stop_instances(InstanceIds=[sim.instance_for("tasks")])

        with urllib.request.urlopen(f"{sim.endpoint_url}/_fleet_sim/api_calls?since={cut}") as answer:
            calls = json.load(answer)["calls"]

        assert [call["operation"] for call in calls] == ["DescribeInstances", "StopInstances"]


class TestCallerOf:
    def test_the_amazon_providers_caller_is_named(self):
        agent = "Boto3/1.40 md/Botocore#1.40 Airflow/3.3.2 AmPP/9.39.0 Caller/FleetInstanceStateSensor x/y"
        assert caller_of(agent) == "FleetInstanceStateSensor"

    def test_an_airflow_client_without_a_caller_is_airflow_and_anything_else_none(self):
        assert caller_of("Boto3/1.40 Airflow/3.3.2 AmPP/9.39.0") == "airflow"
        assert caller_of("Boto3/1.40 Python/3.11 Botocore/1.40") is None
        assert caller_of("") is None
