"""Helpers every test folder shares: waiting, the simulator's quick timings, botocore's model loader,
instance states, a task instance that keeps its XCom.

Tests import it by its bare name (``from fleet_testing import wait_for``): pytest puts ``tests/`` on
``sys.path`` when it imports ``tests/conftest.py``, as it puts each test folder there for that
folder's own helper modules (``agent_testing``, ``fleet_sim_testing``, ...).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from airflow_harness import in_process

# Short but real delays for the fleet simulator: every transition can still be seen between two polls.
FAST = {"transition_delay": 0.3, "registration_delay": 0.3, "delivery_delay": 0.05}


def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something true, and return that; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def share_botocore_loader(monkeypatch: Any) -> None:
    """Make every botocore session the test creates use one model loader (for the test's duration)."""
    in_process.share_botocore_loader(monkeypatch.setattr)


def states(ec2: Any, ids: list[str]) -> dict[str, str]:
    """``{instance_id: state}`` of the instances, as DescribeInstances reports them."""
    response = ec2.describe_instances(InstanceIds=list(ids))
    return {
        instance["InstanceId"]: instance["State"]["Name"]
        for reservation in response["Reservations"]
        for instance in reservation["Instances"]
    }


# A task instance that keeps its XCom pushes, JSON-checked, in ``ti.xcom``.
FakeTaskInstance = in_process.TaskInstance


def role_named(config: Any, name: str) -> Any:
    """The role called ``name`` of a fleet config (the DAG itself only ever walks them all)."""
    matches = [role for role in config.roles if role.name == name]
    if not matches:
        raise KeyError(f"no role named {name!r}; roles are {[role.name for role in config.roles]}")
    return matches[0]
