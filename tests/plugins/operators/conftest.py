"""Fixtures shared by the operator, sensor, trigger and notifier tests (helpers: fleet_operator_testing)."""

from __future__ import annotations

from unittest import mock

import boto3
import pytest
import structlog
from airflow.providers.amazon.aws.hooks.ssm import SsmHook
from botocore.stub import Stubber
from fleet_operator_testing import Ec2Api, ec2_client
from fleet_testing import FakeTaskInstance
from moto import mock_aws

# -- EC2 in moto --------------------------------------------------------------------------------------


@pytest.fixture
def api(monkeypatch):
    """An installed :class:`Ec2Api` inside moto: every EC2 client built in the test reports to it."""
    api = Ec2Api().install(monkeypatch)
    with mock_aws():
        yield api


@pytest.fixture
def client(api):
    """An EC2 client on moto, to set a test up and look at the result."""
    return ec2_client()


# -- SSM through a Stubber ----------------------------------------------------------------------------


@pytest.fixture
def ssm_client():
    return boto3.client("ssm", region_name="us-east-1")


@pytest.fixture
def stub(ssm_client, monkeypatch):
    """A Stubber on the one SSM client; it fails the test if an expected call is left unmade."""
    # Every SsmHook talks to this one stubbed client; hook construction itself stays real.
    monkeypatch.setattr(SsmHook, "conn", property(lambda self: ssm_client))
    with Stubber(ssm_client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


# -- logs and task context ----------------------------------------------------------------------------


@pytest.fixture
def task_log():
    """Log events as rendered, with their level: Airflow 3 logs through structlog, which caplog misses."""
    with structlog.testing.capture_logs(
        processors=[structlog.stdlib.PositionalArgumentsFormatter()]
    ) as events:
        yield events


@pytest.fixture
def context():
    """A task context whose task instance is a MagicMock (XCom pushes are in its call list)."""
    return {"ti": mock.MagicMock()}


@pytest.fixture
def ti():
    """A task instance that keeps its XCom pushes, JSON-checked, in ``ti.xcom``."""
    return FakeTaskInstance()
