"""Each host's fake IMDSv2: tokens, identity, interruption notices on cue, its request log and faults."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from fleet_sim_testing import boot, events, send, wait_ended
from fleet_testing import wait_for

from fleet_sim.hosts import ImdsRequest
from instance_agent.imds import ImdsClient, ImdsError


def call(url: str, method: str = "GET", headers: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def token(base: str, ttl: int = 60) -> str:
    status, body = call(f"{base}/latest/api/token", "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)})
    assert status == 200
    return body


class TestTokens:
    def test_metadata_needs_a_token_of_that_very_host(self, make_sim):
        sim = make_sim(roles={"tasks": 2})
        first, second = (sim.fleet.imds_url(sim.host(i)) for i in sim.instances_for("tasks"))

        without = call(f"{first}/latest/meta-data/instance-id")
        other_hosts = call(
            f"{first}/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token(second)}
        )
        own = call(
            f"{first}/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token(first)}
        )

        assert without[0] == 401
        assert other_hosts[0] == 401
        assert own == (200, sim.instances_for("tasks")[0])

    def test_a_token_expires_and_bad_ttls_are_refused(self, sim):
        base = sim.fleet.imds_url(sim.host(sim.instance_for("tasks")))
        short = token(base, ttl=1)

        time.sleep(1.1)

        assert (
            call(f"{base}/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": short})[0]
            == 401
        )
        assert (
            call(f"{base}/latest/api/token", "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": "0"})[0] == 400
        )
        assert call(f"{base}/latest/api/token", "PUT")[0] == 400
        assert call(f"{base}/latest/api/token", "GET")[0] == 405

    def test_identity_and_region_as_the_agent_reads_them(self, sim):
        instance_id = sim.instance_for("tasks")
        client = ImdsClient(sim.fleet.imds_url(sim.host(instance_id)), token_ttl=60)

        assert client.instance_id() == instance_id
        assert client.region() == sim.region
        assert client.spot_instance_action() is None
        assert client.rebalance_recommendation() is None
        document = json.loads(client.get("/latest/dynamic/instance-identity/document"))
        assert document["instanceId"] == instance_id
        assert client.get("/latest/meta-data/tags/instance/Name") == "tasks"


class TestNotices:
    def test_a_spot_interruption_notice_appears_at_its_time_then_the_instance_is_stopped(self, make_sim):
        sim = make_sim(
            scenario={
                "faults": [
                    {
                        "kind": "spot_interruption",
                        "role": "tasks",
                        "after": 1.0,
                        "since": "running",
                        "notice_seconds": 1.5,
                    }
                ]
            }
        )
        instance_id = boot(sim)
        running_at = events(sim, instance_id, "state", to="running")[0]["t"]
        client = ImdsClient(sim.fleet.imds_url(sim.host(instance_id)), token_ttl=60)

        notice = wait_for(client.spot_instance_action, timeout=5, interval=0.02)
        noticed_at = time.time()

        assert noticed_at - running_at == pytest.approx(1.0, abs=0.3)
        assert notice["action"] == "stop"
        assert time.strptime(notice["time"], "%Y-%m-%dT%H:%M:%SZ")
        sim.wait_for_state(instance_id, "stopped", timeout=5)
        stopping = events(sim, instance_id, "state", to="stopping")[0]["t"]
        assert stopping - noticed_at == pytest.approx(1.5, abs=0.4)
        reason = sim.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"][0][
            "Instances"
        ][0]
        assert reason["StateReason"]["Code"] == "Server.SpotInstanceShutdown"

    def test_a_notice_counted_from_a_command_start(self, make_sim):
        sim = make_sim(scenario={"faults": [{"kind": "rebalance", "role": "tasks", "after": 0.5}]})
        instance_id = boot(sim)
        client = ImdsClient(sim.fleet.imds_url(sim.host(instance_id)), token_ttl=60)
        time.sleep(0.7)
        quiet = client.rebalance_recommendation()

        command_id = send(sim.client("ssm"), instance_id, "sleep 1")
        notice = wait_for(client.rebalance_recommendation, timeout=5, interval=0.02)

        assert quiet is None
        started = events(sim, instance_id, "command_started", command_id=command_id)[0]["t"]
        fired = events(sim, instance_id, "fault", fault="rebalance")[0]["t"]
        assert fired - started == pytest.approx(0.5, abs=0.2)
        assert "noticeTime" in notice
        wait_ended(sim.client("ssm"), command_id, instance_id)
        assert sim.state(instance_id) == "running"  # a rebalance recommendation stops nothing


class TestFaults:
    def add(self, sim, kind: str, count: int | None = None, **parameters) -> None:
        sim.inject({"kind": kind, "instance": sim.instance_for("tasks"), "count": count, **parameters})

    def test_every_request_is_logged_with_the_ttl_asked_for(self, sim):
        host = sim.host(sim.instance_for("tasks"))
        ImdsClient(sim.fleet.imds_url(host), token_ttl=60).instance_id()

        assert host.imds_requests == [
            ImdsRequest("PUT", "/latest/api/token", 200, "60"),
            ImdsRequest("GET", "/latest/meta-data/instance-id", 200, None),
        ]

    def test_unauthorized_forgets_every_token_for_its_count(self, sim):
        base = sim.fleet.imds_url(sim.host(sim.instance_for("tasks")))
        headers = {"X-aws-ec2-metadata-token": token(base)}
        self.add(sim, "imds_unauthorized", count=1)

        assert call(f"{base}/latest/meta-data/instance-id", headers=headers)[0] == 401
        assert call(f"{base}/latest/meta-data/instance-id", headers=headers)[0] == 401  # forgotten
        assert ImdsClient(base).instance_id() == sim.instance_for("tasks")  # a new token works
        assert len(events(sim, sim.instance_for("tasks"), "fault", fault="imds_unauthorized")) == 1

    def test_an_error_answers_500_and_a_delay_answers_late(self, sim):
        base = sim.fleet.imds_url(sim.host(sim.instance_for("tasks")))
        self.add(sim, "imds_error", count=2)
        self.add(sim, "imds_delay", seconds=0.5)

        began = time.monotonic()
        assert call(f"{base}/latest/api/token", "PUT")[0] == 500
        assert time.monotonic() - began >= 0.5
        with pytest.raises(ImdsError, match="HTTP 500"):
            ImdsClient(base).instance_id()
        assert ImdsClient(base).instance_id() == sim.instance_for("tasks")
