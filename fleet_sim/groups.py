"""Auto Scaling groups on the simulator: what the warm pool sees of its instances.

moto launches a group's instances ``InService`` at once; here an instance is ``Pending`` in its
group until its host runs. Its code-server (``GET <endpoint>/_fleet_sim/code-server/<id>/healthz``)
answers 200 once the host has run for the scenario's ``ready_delay``, and 503 before, after, or
for ever under a ``never_ready`` fault.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from moto.autoscaling.models import FakeAutoScalingGroup
from moto.backends import get_backend

from fleet_sim.fleet import Fleet
from fleet_sim.hosts import Host

CODE_SERVER_PREFIX = "/_fleet_sim/code-server"
_COUNTED = ("Pending", "InService")


def _active_instances(group: FakeAutoScalingGroup) -> list:
    return [member for member in group.instance_states if member.lifecycle_state in _COUNTED]


# moto sizes a group by its InService members only; with launches Pending here, it would launch
# again on every SetDesiredCapacity of a boot. AWS counts pending instances toward the desired
# capacity, and so does the simulator.
FakeAutoScalingGroup.active_instances = _active_instances


def set_group_lifecycle(fleet: Fleet, host: Host) -> None:
    """The host's instance is Pending in its group until it runs (moto says InService at once)."""
    backend = get_backend("autoscaling")[fleet.account_id][fleet.region]
    for group in backend.autoscaling_groups.values():
        for member in group.instance_states:
            if member.instance.id == host.instance_id and member.lifecycle_state in ("Pending", "InService"):
                member.lifecycle_state = "InService" if host.state == "running" else "Pending"


def code_server_health(fleet: Fleet, instance_id: str) -> int:
    """The HTTP status of the instance's code-server ``/healthz``."""
    with fleet.lock:
        host = fleet.hosts.get(instance_id)
        if host is None or host.state != "running" or host.running_since is None:
            return 503
        if fleet.faults.take("never_ready", instance_id, host.role) is not None:
            return 503
        booted = time.monotonic() - host.running_since >= fleet.scenario.ready_delay
        return 200 if booted else 503


def code_server_url(base_url: str) -> str:
    """The readiness URL template (the pool config's) of the code-server stand-in at ``base_url``."""
    return f"{base_url.rstrip('/')}{CODE_SERVER_PREFIX}/{{instance_id}}/healthz"


def serve_pool(sim: Any, document: Mapping[str, Any], base_url: str | None = None, desired: int = 0) -> dict:
    """Create the group and claim table a pool config names on the simulator ``sim``; return the
    config with its readiness check on the stand-in, as clients reach it at ``base_url``."""
    if not isinstance(document, Mapping):
        raise ValueError(f"pool config: expected a mapping, got {type(document).__name__}")
    for key in ("group", "claim_table"):
        if not isinstance(document.get(key), str):
            raise ValueError(
                f"pool config: {key}: missing (the simulator creates the group and table it names)"
            )
    max_size = document.get("max_size", 20)
    clients = (sim.client("ec2"), sim.client("autoscaling"), sim.client("dynamodb"))
    create_pool(*clients, document["group"], document["claim_table"], desired=desired, max_size=max_size)
    readiness = {**(document.get("readiness") or {}), "url": code_server_url(base_url or sim.endpoint_url)}
    return {**document, "readiness": readiness}


def create_pool(
    ec2, autoscaling, dynamodb, group: str, table: str, *, desired: int, max_size: int = 20, min_size: int = 0
) -> None:
    """A warm pool's AWS side: a launch template, the Auto Scaling group and the claim table."""
    images = ec2.describe_images()["Images"] or [{"ImageId": "ami-12345678"}]
    ec2.create_launch_template(
        LaunchTemplateName=f"{group}-lt",
        LaunchTemplateData={"ImageId": images[0]["ImageId"], "InstanceType": "t3.micro"},
    )
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=group,
        LaunchTemplate={"LaunchTemplateName": f"{group}-lt"},
        MinSize=min_size,
        MaxSize=max_size,
        DesiredCapacity=desired,
        AvailabilityZones=[f"{autoscaling.meta.region_name}a"],
    )
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
