"""The simulator's shared state: hosts, timings, faults, the timeline, one scheduler, one lock.

moto is not thread-safe: whatever reads or changes moto or a host holds :attr:`Fleet.lock`, and
nothing slow (waiting on processes or sockets) happens under it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moto.backends import get_backend

from fleet_sim.faults import FaultBook
from fleet_sim.hosts import Host
from fleet_sim.scenario import Scenario
from fleet_sim.scheduler import Scheduler
from fleet_sim.timeline import ApiCallLog, Timeline

ROLE_TAG = "fleet-sim:role"
IMDS_PREFIX = "/_fleet_sim/imds"

StateListener = Callable[[Host, str, str], None]
CommandListener = Callable[[Host, str], None]


class Fleet:
    def __init__(
        self,
        *,
        scenario: Scenario,
        region: str,
        account_id: str,
        workdir: Path,
        sim_id: str,
        python_bin: str,
        repo_root: str,
    ):
        self.scenario = scenario
        self.region = region
        self.account_id = account_id
        self.workdir = workdir
        self.sim_id = sim_id
        self.python_bin = python_bin
        self.repo_root = repo_root
        self.lock = threading.RLock()
        self.scheduler = Scheduler()
        self.timeline = Timeline()
        self.api_calls = ApiCallLog()
        self.faults = FaultBook(scenario.faults)
        self.hosts: dict[str, Host] = {}
        self.endpoint_url = ""
        # While True, instances that appear are the simulator's own, made in their initial state.
        self.creating = False
        self.state_listeners: list[StateListener] = []
        self.command_listeners: list[CommandListener] = []

    # -- moto -------------------------------------------------------------------------------------

    @property
    def ec2_backend(self) -> Any:
        return get_backend("ec2")[self.account_id][self.region]

    def moto_instance(self, instance_id: str) -> Any:
        return self.ec2_backend.get_instance(instance_id)

    def tags(self, instance_id: str) -> dict[str, str]:
        return {tag["key"]: tag["value"] for tag in self.moto_instance(instance_id).get_tags()}

    # -- hosts ------------------------------------------------------------------------------------

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
        host.prepare_sandbox()
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
        return host.environment(
            endpoint_url=self.endpoint_url,
            region=self.region,
            imds_url=self.imds_url(host),
            python_bin=self.python_bin,
            repo_root=self.repo_root,
        )

    # -- events -----------------------------------------------------------------------------------

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
