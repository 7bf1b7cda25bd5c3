"""The fleet's EC2 service layer: instance states, batched reads and the calls' error codes.

Every EC2 state set the operators, sensors and triggers decide by is defined here, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from instance_agent.protocol import AgentReport
from operators.fleet_aws import FleetError, chunked, error_code, error_message, some

# DescribeInstances refuses more than 1000 IDs in one request.
DESCRIBE_BATCH = 1000
# DescribeInstanceStatus accepts at most 100 IDs per request.
STATUS_BATCH = 100

# EC2 errors that mean "no room for this instance now", where trying another candidate helps.
CAPACITY_ERRORS = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientCapacityOnOutpost",
    }
)
NOT_FOUND_ERRORS = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})
# EC2's answer when an instance is not in a state the call accepts: another actor changed the
# state between our read and our call. Re-reading and waiting out the transition resolves it.
INCORRECT_STATE = "IncorrectInstanceState"

# -- instance states ------------------------------------------------------------------------------

# Booting or booted: an instance that can take a command, and that a force-stop must stop.
UP_STATES = frozenset({"pending", "running"})
# Waited out before a start or a stop: EC2 refuses to start a stopping instance or stop a pending one.
TRANSITIONAL_STATES = frozenset({"pending", "stopping", "shutting-down"})
GONE_STATES = frozenset({"shutting-down", "terminated"})
# A pseudo target state: "no longer in a transitional state".
SETTLED = "settled"


@dataclass(frozen=True)
class ActionStates:
    """How a start or a stop treats each state: ``done`` needs no call, ``settle`` is waited out
    before the call, ``act`` goes into the one batched call; any other state fails the task."""

    done: frozenset[str]
    settle: frozenset[str]
    act: frozenset[str]


# Pending is on its way to running: the wait for running covers it.
START_STATES = ActionStates(done=UP_STATES, settle=frozenset({"stopping"}), act=frozenset({"stopped"}))
STOP_STATES = ActionStates(
    done=frozenset({"stopped", "stopping"}), settle=frozenset({"pending"}), act=frozenset({"running"})
)


def default_failure_states(target_state: str) -> list[str]:
    """States from which ``target_state`` can no longer be reached without someone acting."""
    if target_state == "terminated":
        return []
    if target_state in ("stopped", SETTLED):
        # A settled instance may still be unusable: nothing can start or stop a terminated one.
        return sorted(GONE_STATES)
    if target_state == "running":
        # Not "stopped": right after StartInstances an eventually consistent read may still say so.
        return sorted(GONE_STATES | {"stopping"})
    return []


# -- reads ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceView:
    """One instance as one DescribeInstances call saw it."""

    instance_id: str
    state: str
    tags: dict[str, str] = field(default_factory=dict)
    state_reason: str | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> InstanceView:
        return cls(
            instance_id=data["InstanceId"],
            state=data["State"]["Name"],
            tags={tag["Key"]: tag["Value"] for tag in data.get("Tags", [])},
            state_reason=(data.get("StateReason") or {}).get("Message"),
        )

    @property
    def report(self) -> AgentReport | None:
        return AgentReport.from_tags(self.tags)

    @property
    def described_state(self) -> str:
        """The state, with EC2's reason for it when it gave one."""
        return self.state + (f" ({self.state_reason})" if self.state_reason else "")

    def to_xcom(self) -> dict[str, Any]:
        return {"state": self.state, "tags": dict(self.tags)}


def describe_instances(client: Any, instance_ids: Sequence[str]) -> dict[str, InstanceView]:
    """Read the state and tags of every instance: one call per 1000 IDs, pages followed.

    An unknown or malformed ID raises :class:`FleetError` naming it.
    """
    views: dict[str, InstanceView] = {}
    paginator = client.get_paginator("describe_instances")
    for batch in chunked(list(instance_ids), DESCRIBE_BATCH):
        try:
            for page in paginator.paginate(InstanceIds=batch):
                for reservation in page.get("Reservations", []):
                    for data in reservation.get("Instances", []):
                        view = InstanceView.from_api(data)
                        views[view.instance_id] = view
        except ClientError as error:
            if error_code(error) in NOT_FOUND_ERRORS:
                raise FleetError(
                    f"EC2 instance not found among {some(batch, 5)}: {error_message(error)}"
                ) from error
            raise
    missing = [instance_id for instance_id in instance_ids if instance_id not in views]
    if missing:
        raise FleetError(f"EC2 instance(s) {', '.join(missing)} not found (DescribeInstances)")
    return views


def status_ok(client: Any, instance_ids: Sequence[str]) -> set[str]:
    """The instances whose EC2 status checks (instance and system) both pass: one call per 100."""
    ok: set[str] = set()
    for batch in chunked(list(instance_ids), STATUS_BATCH):
        for status in client.describe_instance_status(InstanceIds=batch).get("InstanceStatuses", []):
            if (
                status.get("InstanceStatus", {}).get("Status") == "ok"
                and status.get("SystemStatus", {}).get("Status") == "ok"
            ):
                ok.add(status["InstanceId"])
    return ok
