"""``python -m fleet_sim serve`` as a user runs it: one line when ready, clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import boto3
import pytest
import yaml
from fleet_dag.config import parse_config
from fleet_sim_testing import REPO, ping_status, send, serving, wait_ended
from fleet_testing import FAST, role_named, wait_for
from operators.config_files import parse_duration
from operators.pool_config import parse_pool_config

from fleet_sim.processes import marked_pids


def get_json(url: str, data: dict | None = None) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(data).encode() if data is not None else None,
        method="POST" if data is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def serve_refused(*options: str) -> subprocess.CompletedProcess:
    """``python -m fleet_sim serve *options`` expected to refuse at once (it would otherwise run on)."""
    return subprocess.run(
        [sys.executable, "-m", "fleet_sim", "serve", *options],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.fixture
def served(tmp_path):
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(FAST))
    options = ["--fleet", str(REPO / "dags" / "fleet.yaml"), "--scenario", str(scenario)]
    with serving(tmp_path, *options, "--write-config", str(tmp_path / "fleet.yaml")) as (process, ready):
        yield process, ready, tmp_path


class TestServe:
    def test_it_serves_the_fleet_and_stops_cleanly_on_sigterm(self, served):
        process, ready, tmp_path = served
        endpoint = ready["endpoint_url"]
        session = boto3.Session("testing", "testing", region_name=ready["region"])
        ec2, ssm = (session.client(service, endpoint_url=endpoint) for service in ("ec2", "ssm"))

        assert ready["status"] == "ready"
        assert json.loads(ready["airflow_connection"])["extra"]["endpoint_url"] == endpoint
        assert endpoint.startswith("http://127.0.0.1:")
        assert sorted(ready["roles"]) == ["hyperliquid", "signer", "tasks", "uniswap"]
        tasks = ready["roles"]["tasks"][0]
        config = parse_config(yaml.safe_load((tmp_path / "fleet.yaml").read_text()))
        assert role_named(config, "tasks").instance == tasks
        ec2.start_instances(InstanceIds=[tasks])
        wait_for(lambda: ping_status(ssm, tasks) == "Online")
        wait_ended(ssm, send(ssm, tasks, "setsid nohup sleep 300 >/dev/null 2>&1 &"), tasks)
        marker = ready["hosts"][tasks]["marker"]
        assert marked_pids(marker), "the detached sleep runs on the host"
        timeline = get_json(f"{endpoint}/_fleet_sim/timeline?instance_id={tasks}")["events"]
        assert [entry["to"] for entry in timeline if entry["event"] == "state"] == [
            "stopped",
            "pending",
            "running",
        ]
        fault = get_json(
            f"{endpoint}/_fleet_sim/faults", {"kind": "throttle", "operation": "DescribeInstances"}
        )
        assert fault["fault"]["remaining"] == 1

        process.send_signal(signal.SIGTERM)

        assert process.wait(timeout=15) == 0
        assert not marked_pids(marker), "the host's processes were stopped with the simulator"

    def test_a_bad_scenario_is_refused_before_anything_starts(self, tmp_path):
        bad = tmp_path / "bad.yaml"
        bad.write_text("faults: [{kind: capacity}]\n")

        completed = serve_refused("--scenario", str(bad))

        assert completed.returncode == 2
        assert "faults[0]: give exactly one of 'role' or 'instance'" in completed.stderr
        assert completed.stdout == ""


class TestServePool:
    def test_it_creates_the_pool_and_writes_its_config_onto_the_stand_in(self, tmp_path):
        written = tmp_path / "pool.sim.yaml"
        options = ["--fleet", str(REPO / "dags" / "fleet.yaml"), "--pool", str(REPO / "dags" / "pool.yaml")]
        options += ["--write-pool-config", str(written), "--advertise", "http://fleet-sim:5000"]
        with serving(tmp_path, *options) as (process, ready):
            session = boto3.Session("testing", "testing", region_name=ready["region"])
            autoscaling, dynamodb = (
                session.client(service, endpoint_url=ready["endpoint_url"])
                for service in ("autoscaling", "dynamodb")
            )
            shipped = yaml.safe_load((REPO / "dags" / "pool.yaml").read_text())
            (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[shipped["group"]])[
                "AutoScalingGroups"
            ]
            assert (ready["pool"], group["DesiredCapacity"], group["MaxSize"]) == (
                shipped["group"],
                0,
                shipped["max_size"],
            )
            assert (
                dynamodb.describe_table(TableName=shipped["claim_table"])["Table"]["TableStatus"] == "ACTIVE"
            )
            config = parse_pool_config(yaml.safe_load(written.read_text()))
            assert (
                config.readiness.url == "http://fleet-sim:5000/_fleet_sim/code-server/{instance_id}/healthz"
            )
            assert (config.buffer, config.max_idle_age) == (
                shipped["buffer"],
                parse_duration(shipped["max_idle_age"]),
            )
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0

    @pytest.mark.parametrize(
        ("pool", "message"),
        [
            ("buffer: 5\n", "pool config: group: missing"),
            ("- a list\n", "expected a mapping, got list"),
        ],
    )
    def test_a_pool_config_it_cannot_serve_is_refused_naming_the_field(self, tmp_path, pool, message):
        path = tmp_path / "pool.yaml"
        path.write_text(pool)
        completed = serve_refused("--pool", str(path))
        assert completed.returncode == 2
        assert message in completed.stderr and str(path) in completed.stderr
