"""One look at the pool: the group, its instances and the claim table, read in three calls.

``read_pool`` makes one DescribeAutoScalingGroups, one DescribeInstances (by the group's tag,
up to 1000 instances a page) and one consistent Scan of the claim table, whatever the pool's
size; the reconciler and the API both decide from the :class:`PoolView` it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from instance_agent.protocol import TAG_NOTICE
from operators.pool_claims import Claims, ClaimTable

GROUP_TAG = "aws:autoscaling:groupName"
# What the pool mirrors of a claim on the instance, for whoever looks at it in the EC2 console.
TAG_PROJECT = "fleet:pool-project"
TAG_CLAIMED_AT = "fleet:pool-claimed-at"
IN_SERVICE = "InService"
INSTANCE_ID_PATTERN = r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$"
_GONE = ("shutting-down", "terminated")


class PoolError(Exception):
    """The pool cannot be read or changed; the message names the group, table or instance."""


@dataclass(frozen=True)
class Machine:
    instance_id: str
    lifecycle: str  # the group's LifecycleState: Pending, InService, Terminating, ...
    state: str  # the EC2 state: pending, running, ...
    launched_at: datetime | None
    private_ip: str | None = None
    public_ip: str | None = None
    protected: bool = False
    notice: str | None = None  # a spot interruption or rebalance notice (the agent's fleet:notice tag)
    tags: dict[str, str] = field(default_factory=dict)
    project: str | None = None
    claimed_at: str | None = None
    retiring: bool = False
    failures: int = 0  # readiness failures in a row, counted by the reconciler
    ready: bool | None = None  # None: not checked in this look

    @property
    def claimed(self) -> bool:
        return self.project is not None

    @property
    def leaving(self) -> bool:
        """The group is terminating or detaching it."""
        return self.lifecycle.startswith(("Terminating", "Detach"))

    @property
    def free(self) -> bool:
        """Neither a project's, nor being retired, nor leaving: counts toward the idle buffer,
        booting or ready."""
        return not self.claimed and not self.retiring and not self.leaving

    @property
    def in_service(self) -> bool:
        return self.lifecycle == IN_SERVICE and self.state == "running"

    def age_seconds(self, now: datetime) -> float:
        return (now - self.launched_at).total_seconds() if self.launched_at else 0.0

    def as_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.instance_id,
            "state": self.state,
            "lifecycle": self.lifecycle,
            "ip": self.public_ip or self.private_ip,
            "private_ip": self.private_ip,
            "public_ip": self.public_ip,
            "project": self.project,
            "claimed_at": self.claimed_at,
            "retiring": self.retiring,
            "ready": self.ready,
            "notice": self.notice,
            "age_seconds": round(self.age_seconds(now)),
        }


@dataclass(frozen=True)
class PoolView:
    group: str
    desired: int
    min_size: int
    max_size: int
    machines: tuple[Machine, ...]
    claims: Claims

    def machine(self, instance_id: str) -> Machine | None:
        return next((m for m in self.machines if m.instance_id == instance_id), None)

    @property
    def used(self) -> list[Machine]:
        return [m for m in self.machines if m.claimed]

    @property
    def free(self) -> list[Machine]:
        return [m for m in self.machines if m.free]

    @property
    def retiring(self) -> list[Machine]:
        return [m for m in self.machines if m.retiring]

    def with_readiness(self, ready: dict[str, bool], failures: dict[str, int] | None = None) -> PoolView:
        failures = failures or {}
        machines = tuple(
            replace(
                m, ready=ready.get(m.instance_id, m.ready), failures=failures.get(m.instance_id, m.failures)
            )
            for m in self.machines
        )
        return replace(self, machines=machines)


def read_pool(autoscaling: Any, ec2: Any, table: ClaimTable, group: str) -> PoolView:
    groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    if not groups:
        raise PoolError(f"no Auto Scaling group named {group!r} (pool config: group)")
    (asg,) = groups
    members = {i["InstanceId"]: i for i in asg.get("Instances", [])}
    described: dict[str, dict[str, Any]] = {}
    if members:
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": f"tag:{GROUP_TAG}", "Values": [group]}],
            PaginationConfig={"PageSize": 1000},
        )
        for page in pages:
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    described[instance["InstanceId"]] = instance
    claims = table.read()
    machines = []
    for instance_id, member in sorted(members.items()):
        instance = described.get(instance_id, {})
        state = instance.get("State", {}).get("Name", "pending")
        if state in _GONE:
            continue
        tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
        claim = claims.by_instance.get(instance_id, {})
        machines.append(
            Machine(
                instance_id=instance_id,
                lifecycle=member["LifecycleState"],
                state=state,
                launched_at=instance.get("LaunchTime"),
                private_ip=instance.get("PrivateIpAddress"),
                public_ip=instance.get("PublicIpAddress"),
                protected=bool(member.get("ProtectedFromScaleIn")),
                notice=tags.get(TAG_NOTICE),
                tags=tags,
                project=claim.get("project"),
                claimed_at=claim.get("claimed_at"),
                retiring=bool(claim.get("retiring")),
                failures=claims.failures.get(instance_id, 0),
            )
        )
    return PoolView(
        group=group,
        desired=asg["DesiredCapacity"],
        min_size=asg["MinSize"],
        max_size=asg["MaxSize"],
        machines=tuple(machines),
        claims=claims,
    )
