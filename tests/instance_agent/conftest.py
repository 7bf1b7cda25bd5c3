"""Fixtures of the agent's tests (the helpers they are built on: ``agent_testing``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_testing import Agent, FakeImds, MotoAws


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    return Agent(tmp_path)


# -- a fake IMDS -----------------------------------------------------------------------------------


@pytest.fixture
def imds():
    fake = FakeImds().start()
    yield fake
    fake.stop()


# -- a moto server (the agent is another process, so mock_aws cannot reach it) ----------------------


@pytest.fixture(scope="session")
def moto_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_server) -> MotoAws:
    return MotoAws(moto_server)


@pytest.fixture
def on_ec2(agent, imds, aws):
    """The agent on a (moto) instance: IMDS says which, AWS calls go to moto."""
    imds.instance_id = aws.new_instance()
    agent.use_imds(imds.url)
    agent.env["AWS_ENDPOINT_URL"] = aws.url
    return imds.instance_id
