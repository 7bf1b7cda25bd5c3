"""A fake IMDSv2 per host under ``<endpoint>/_fleet_sim/imds/<instance id>``, as EC2 with IMDSv2
required: PUT a token (TTL 1 to 21600 s, 403 with ``X-Forwarded-For``), GET with it (else 401);
404 for what is not there, which is also how IMDS says "no interruption notice".

Its faults, from the fault book like any other, each on its target host and for its ``count``
(``None``: every request): ``imds_unauthorized`` (a valid token answered 401, every token
forgotten), ``imds_error`` (HTTP 500), ``imds_delay`` (the answer ``seconds`` late)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping

from fleet_sim.faults import ActiveFault
from fleet_sim.fleet import Fleet
from fleet_sim.hosts import Host, ImdsRequest

TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TTL = 21600

Reply = tuple[int, dict[str, str], bytes]


class ImdsService:
    def __init__(self, fleet: Fleet, clock=time.monotonic):
        self.fleet = fleet
        self._clock = clock

    def handle(self, instance_id: str, method: str, path: str, headers: Mapping[str, str]) -> Reply:
        with self.fleet.lock:
            host = self.fleet.hosts.get(instance_id)
            if host is None:
                return _text(404, "Not Found")
            reply = self._answer(host, method, path, headers)
            host.imds_requests.append(ImdsRequest(method, path, reply[0], headers.get(TTL_HEADER)))
            delay = self._fault(host, "imds_delay")
        if delay is not None:
            time.sleep(delay.spec.seconds or 0.0)  # out of the lock: a slow IMDS holds up no one else
        return reply

    def _answer(self, host: Host, method: str, path: str, headers: Mapping[str, str]) -> Reply:
        if self._fault(host, "imds_error") is not None:
            return _text(500, "Internal Server Error")
        if path == TOKEN_PATH:
            if method != "PUT":
                return _text(405, "Method Not Allowed")
            return self._token(host, headers)
        if method not in ("GET", "HEAD"):
            return _text(405, "Method Not Allowed")
        if not self._authorized(host, headers.get(TOKEN_HEADER)):
            return _text(401, "Unauthorized")
        if self._fault(host, "imds_unauthorized") is not None:
            host.imds_tokens.clear()
            return _text(401, "Unauthorized")
        value = self._value(host, path.rstrip("/") if path != "/" else path)
        if value is None:
            return _text(404, "Not Found")
        return _text(200, value)

    def _fault(self, host: Host, kind: str) -> ActiveFault | None:
        fault = self.fleet.faults.take(kind, host.instance_id, host.role)
        if fault is not None:
            self.fleet.record("fault", host, fault=kind, fault_id=fault.id)
        return fault

    def _token(self, host: Host, headers: Mapping[str, str]) -> Reply:
        if headers.get("X-Forwarded-For"):
            return _text(403, "Forbidden")
        try:
            ttl = int(headers.get(TTL_HEADER, ""))
        except ValueError:
            ttl = 0
        if not 1 <= ttl <= MAX_TTL:
            return _text(400, "Bad Request")
        now = self._clock()
        host.imds_tokens = {token: expiry for token, expiry in host.imds_tokens.items() if expiry > now}
        token = secrets.token_urlsafe(32)
        host.imds_tokens[token] = now + ttl
        return 200, {"Content-Type": "text/plain", TTL_HEADER: str(ttl)}, token.encode()

    def _authorized(self, host: Host, token: str | None) -> bool:
        return bool(token) and host.imds_tokens.get(token, 0.0) > self._clock()

    def _value(self, host: Host, path: str) -> str | None:
        instance = self.fleet.moto_instance(host.instance_id)
        zone = instance.placement.zone or f"{self.fleet.region}a"
        values = {
            "/latest/meta-data/instance-id": host.instance_id,
            "/latest/meta-data/instance-type": instance.instance_type,
            "/latest/meta-data/ami-id": instance.image_id,
            "/latest/meta-data/placement/region": self.fleet.region,
            "/latest/meta-data/placement/availability-zone": zone,
            "/latest/meta-data/local-ipv4": instance.private_ip or "",
            "/latest/meta-data/hostname": instance.private_dns_name,
            "/latest/meta-data/local-hostname": instance.private_dns_name,
            "/latest/meta-data/instance-life-cycle": "spot" if host.spot_action else "on-demand",
            "/latest/dynamic/instance-identity/document": json.dumps(
                {
                    "accountId": self.fleet.account_id,
                    "architecture": "x86_64",
                    "availabilityZone": zone,
                    "imageId": instance.image_id,
                    "instanceId": host.instance_id,
                    "instanceType": instance.instance_type,
                    "privateIp": instance.private_ip,
                    "region": self.fleet.region,
                    "version": "2017-09-30",
                },
                indent=2,
            ),
        }
        if host.spot_action:
            values["/latest/meta-data/spot/instance-action"] = json.dumps(host.spot_action)
            if host.spot_action.get("action") == "terminate":
                values["/latest/meta-data/spot/termination-time"] = host.spot_action["time"]
        if host.rebalance:
            values["/latest/meta-data/events/recommendations/rebalance"] = json.dumps(host.rebalance)
        tags = self.fleet.tags(host.instance_id)
        values["/latest/meta-data/tags/instance"] = "\n".join(sorted(tags))
        for key, value in tags.items():
            values[f"/latest/meta-data/tags/instance/{key}"] = value
        if path in values:
            return values[path]
        # A directory: list what is under it, as IMDS does ("name/" for subdirectories).
        prefix = path.rstrip("/") + "/"
        children = sorted(
            {
                key[len(prefix) :].split("/", 1)[0] + ("/" if "/" in key[len(prefix) :] else "")
                for key in values
                if key.startswith(prefix)
            }
        )
        return "\n".join(children) if children else None


def _text(status: int, body: str) -> Reply:
    return status, {"Content-Type": "text/plain"}, body.encode()
