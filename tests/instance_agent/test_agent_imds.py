"""The IMDSv2 client against fleet_sim's IMDS of a simulated host."""

from __future__ import annotations

import socket
import time

import pytest

from instance_agent.imds import (
    DEFAULT_ENDPOINT,
    REBALANCE_PATH,
    SPOT_ACTION_PATH,
    TOKEN_PATH,
    ImdsClient,
    ImdsError,
    endpoint_from_env,
)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestImdsClient:
    def test_reads_the_instance_identity_with_a_token(self, imds):
        client = ImdsClient(imds.url, token_ttl=300)

        assert client.instance_id() == imds.instance_id
        assert client.region() == "us-east-1"
        assert imds.ttls() == ["300"]
        assert imds.count(TOKEN_PATH) == 1  # one token serves both calls

    def test_404_means_no_notice(self, imds):
        client = ImdsClient(imds.url)

        assert client.spot_instance_action() is None
        assert client.rebalance_recommendation() is None
        assert imds.count(SPOT_ACTION_PATH, 404) == 1

    def test_notices_are_parsed(self, imds):
        imds.notice(
            spot_action={"action": "stop", "time": "2026-11-23T00:32:00Z"},
            rebalance={"noticeTime": "2026-11-23T00:20:00Z"},
        )
        client = ImdsClient(imds.url)

        assert client.spot_instance_action() == {"action": "stop", "time": "2026-11-23T00:32:00Z"}
        assert client.rebalance_recommendation() == {"noticeTime": "2026-11-23T00:20:00Z"}
        assert imds.count(REBALANCE_PATH, 200) == 1

    def test_the_token_is_refreshed_before_it_expires(self, imds):
        clock = FakeMonotonic()
        client = ImdsClient(imds.url, token_ttl=120, monotonic=clock)
        client.instance_id()

        clock.now += 80  # 40 s left: still more than the refresh margin (30 s)
        client.instance_id()
        assert imds.count(TOKEN_PATH, 200) == 1

        clock.now += 15  # 25 s left: inside the margin, so a new token first
        client.instance_id()
        assert imds.count(TOKEN_PATH, 200) == 2
        assert imds.count("/latest/meta-data/instance-id", 401) == 0

    def test_a_401_fetches_a_new_token_and_retries_once(self, imds):
        client = ImdsClient(imds.url)
        client.instance_id()
        imds.fault("imds_unauthorized", count=1)

        assert client.instance_id() == imds.instance_id
        assert imds.count(TOKEN_PATH, 200) == 2
        assert imds.count("/latest/meta-data/instance-id", 401) == 1

    def test_a_persistent_401_is_an_error(self, imds):
        client = ImdsClient(imds.url)
        imds.fault("imds_unauthorized", count=5)

        with pytest.raises(ImdsError, match="HTTP 401"):
            client.instance_id()

    def test_every_call_has_a_timeout(self, imds):
        imds.fault("imds_delay", seconds=2.0)
        client = ImdsClient(imds.url, timeout=0.3)

        began = time.monotonic()
        with pytest.raises(ImdsError):
            client.spot_instance_action()
        assert time.monotonic() - began < 1.5

    def test_an_unreachable_endpoint_is_an_error_not_a_crash(self):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]  # closed again: connection refused
        client = ImdsClient(f"http://127.0.0.1:{port}", timeout=0.5)

        with pytest.raises(ImdsError):
            client.instance_id()

    def test_disabled_by_the_botocore_variable(self, imds):
        client = ImdsClient(imds.url, env={"AWS_EC2_METADATA_DISABLED": "true"})

        with pytest.raises(ImdsError, match="disabled"):
            client.instance_id()
        assert not imds.log


class TestEndpoint:
    def test_botocore_variables_choose_the_endpoint(self):
        assert endpoint_from_env({}) == DEFAULT_ENDPOINT
        assert endpoint_from_env({"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:8111/"}) == (
            "http://127.0.0.1:8111"
        )
        assert (
            endpoint_from_env({"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": "IPv6"}) == "http://[fd00:ec2::254]"
        )

    def test_the_client_reads_the_endpoint_from_the_environment(self, imds):
        client = ImdsClient(env={"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url + "/"})

        assert client.instance_id() == imds.instance_id
