"""The simulator's shared state: hosts, timings, faults, the timeline, one scheduler, one lock.

moto is not thread-safe: whatever reads or changes moto or a host holds :attr:`Fleet.lock`, and
nothing slow (waiting on processes or sockets) happens under it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moto.backends import get_backend

from fleet_sim.faults import FaultBook
from fleet_sim.hosts import Host
from fleet_sim.processes import MARKER_VARIABLE
from fleet_sim.scenario import Scenario
from fleet_sim.scheduler import Scheduler
from fleet_sim.timeline import ApiCallLog, Timeline

ROLE_TAG = "fleet-sim:role"
IMDS_PREFIX = "/_fleet_sim/imds"

StateListener = Callable[[Host, str, str], None]
CommandListener = Callable[[Host, str], None]


@dataclass(eq=False)
class Fleet:
    scenario: Scenario
    region: str
    account_id: str
    workdir: Path
    sim_id: str
    python_bin: str
    repo_root: str
    endpoint_url: str = ""
    # While True, instances that appear are the simulator's own, made in their initial state.
    creating: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)
    scheduler: Scheduler = field(default_factory=Scheduler)
    timeline: Timeline = field(default_factory=Timeline)
    api_calls: ApiCallLog = field(default_factory=ApiCallLog)
    hosts: dict[str, Host] = field(default_factory=dict)
    state_listeners: list[StateListener] = field(default_factory=list)
    command_listeners: list[CommandListener] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.faults = FaultBook(self.scenario.faults)

    @property
    def ec2_backend(self) -> Any:
        return get_backend("ec2")[self.account_id][self.region]

    def moto_instance(self, instance_id: str) -> Any:
        return self.ec2_backend.get_instance(instance_id)

    def tags(self, instance_id: str) -> dict[str, str]:
        return {tag["key"]: tag["value"] for tag in self.moto_instance(instance_id).get_tags()}

    def host(self, instance_id: str) -> Host:
        try:
            return self.hosts[instance_id]
        except KeyError:
            raise KeyError(
                f"no simulated host for instance {instance_id!r}; hosts are {sorted(self.hosts)}"
            ) from None

    def add_host(self, instance_id: str, role: str | None, state: str) -> Host:
        host = Host(
            instance_id=instance_id,
            role=role,
            sandbox=self.workdir / "hosts" / instance_id,
            marker=f"{self.sim_id}/{instance_id}",
            state=state,
        )
        (host.sandbox / "tmp").mkdir(parents=True, exist_ok=True)
        self.hosts[instance_id] = host
        return host

    def roles(self) -> dict[str, list[str]]:
        """``{role: [instance ids]}`` in creation order; hosts without a role are left out."""
        mapping: dict[str, list[str]] = {}
        for host in self.hosts.values():
            if host.role is not None:
                mapping.setdefault(host.role, []).append(host.instance_id)
        return mapping

    def imds_url(self, host: Host) -> str:
        return f"{self.endpoint_url}{IMDS_PREFIX}/{host.instance_id}"

    def environment(self, host: Host) -> dict[str, str]:
        """A host's clean environment, as on a fresh VM, pointed at the simulator: only ``PATH``
        (behind the venv's ``bin``: ``python3`` has boto3) and the locale come from the simulator's."""
        return {
            "PATH": os.pathsep.join(filter(None, [self.python_bin, os.environ.get("PATH", "/usr/bin:/bin")])),
            "HOME": str(host.sandbox),
            "USER": "root",
            "SHELL": "/bin/bash",
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "TMPDIR": str(host.sandbox / "tmp"),
            "PYTHONPATH": self.repo_root,
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.imds_url(host),
            MARKER_VARIABLE: host.marker,
        }

    def record(self, event: str, host: Host | None, **fields: Any) -> dict:
        return self.timeline.record(
            event, host.instance_id if host else None, host.role if host else None, **fields
        )

    def state_changed(self, host: Host, old: str, new: str) -> None:
        for listener in self.state_listeners:
            listener(host, old, new)

    def command_started(self, host: Host, command_id: str) -> None:
        for listener in self.command_listeners:
            listener(host, command_id)
