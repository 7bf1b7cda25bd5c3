"""The SSM agents of the hosts: registration (``Online`` a delay after ``running``, then
``ConnectionLost``) and ``DescribeInstanceInformation``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fleet_sim.fleet import Fleet
from fleet_sim.hosts import Host

AGENT_VERSION = "3.3.1611.0"


class SsmAgents:
    def __init__(self, fleet: Fleet, on_online: Callable[[Host], None]):
        self.fleet = fleet
        self._on_online = on_online
        fleet.state_listeners.append(self._on_state_change)

    def _on_state_change(self, host: Host, old: str, new: str) -> None:
        if new == "running":
            delay = self.fleet.faults.registration_delay(
                host.instance_id, host.role, self.fleet.scenario.registration_delay
            )
            self.fleet.scheduler.cancel(host.registration)
            host.registration = self.fleet.scheduler.call_later(delay, lambda: self._register(host))
        elif old == "running":
            self.fleet.scheduler.cancel(host.registration)
            host.registration = None
            if host.ssm_online:
                host.ssm_online = False
                host.last_ping = time.time()
                self.fleet.record("ssm_offline", host)

    def _register(self, host: Host) -> None:
        with self.fleet.lock:
            host.registration = None
            if host.state != "running" or host.ssm_online:
                return
            host.ssm_registered = host.ssm_online = True
            host.registered_at = host.last_ping = time.time()
            self.fleet.record("ssm_online", host)
            self._on_online(host)

    @staticmethod
    def ping_status(host: Host) -> str | None:
        """``Online``, ``ConnectionLost``, or ``None`` for a host that never registered."""
        if not host.ssm_registered:
            return None
        return "Online" if host.ssm_online else "ConnectionLost"

    def instance_information(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        """DescribeInstanceInformation's entries for the request's filters (not paged)."""
        wanted_ids: set[str] | None = None
        wanted_pings: set[str] | None = None
        tag_filters: list[tuple[str, set[str]]] = []
        filters = [
            (item.get("key"), item.get("valueSet") or [])
            for item in request.get("InstanceInformationFilterList") or []
        ]
        filters += [(item.get("Key"), item.get("Values") or []) for item in request.get("Filters") or []]
        for key, values in filters:
            if key == "InstanceIds":
                wanted_ids = set(values) if wanted_ids is None else wanted_ids & set(values)
            elif key == "PingStatus":
                wanted_pings = set(values)
            elif key == "ResourceType" and "EC2Instance" not in values:
                wanted_ids = set()
            elif isinstance(key, str) and key.startswith("tag:"):
                tag_filters.append((key[4:], set(values)))
        entries = []
        for host in self.fleet.hosts.values():
            ping = self.ping_status(host)
            if ping is None or (wanted_ids is not None and host.instance_id not in wanted_ids):
                continue
            if wanted_pings is not None and ping not in wanted_pings:
                continue
            tags = self.fleet.tags(host.instance_id)
            if not all(tags.get(key) in values for key, values in tag_filters):
                continue
            instance = self.fleet.moto_instance(host.instance_id)
            entries.append(
                {
                    "InstanceId": host.instance_id,
                    "PingStatus": ping,
                    "LastPingDateTime": time.time() if host.ssm_online else host.last_ping,
                    "AgentVersion": AGENT_VERSION,
                    "IsLatestVersion": True,
                    "PlatformType": "Linux",
                    "PlatformName": "Amazon Linux",
                    "PlatformVersion": "2023",
                    "ResourceType": "EC2Instance",
                    "IPAddress": instance.private_ip,
                    "ComputerName": instance.private_dns_name,
                    "SourceId": host.instance_id,
                    "SourceType": "AWS::EC2::Instance",
                    "RegistrationDate": host.registered_at,
                }
            )
        return entries
