"""Fixtures of the agent's tests (the helpers they are built on: ``agent_testing``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_testing import ROLE, Agent, SimAws, SimImds
from fleet_testing import FAST

from fleet_sim import FleetSimulator


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    return Agent(tmp_path)


@pytest.fixture
def sim(tmp_path: Path):
    """fleet_sim with one running instance of the role ``tasks``: the AWS and IMDS of these tests
    (the agent is another process, so it needs an endpoint, not ``mock_aws``)."""
    scenario = {**FAST, "initial_state": "running"}
    with FleetSimulator(roles=[ROLE], scenario=scenario, workdir=tmp_path / "sim") as simulator:
        yield simulator


@pytest.fixture
def imds(sim) -> SimImds:
    return SimImds(sim, sim.instance_for(ROLE))


@pytest.fixture
def aws(sim) -> SimAws:
    return SimAws(sim)


@pytest.fixture
def on_ec2(agent, imds, aws) -> str:
    """The agent on the simulated instance: IMDS says which, AWS calls go to the simulator."""
    agent.use_imds(imds.url)
    agent.env["AWS_ENDPOINT_URL"] = aws.url
    return imds.instance_id
