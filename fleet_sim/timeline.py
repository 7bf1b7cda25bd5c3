"""What happened to each simulated instance, and when: the record benchmarks and tests read.

Every entry has ``t`` (Unix time, float), ``time`` (UTC ISO-8601), ``instance_id``, ``role``
and ``event``, plus fields of its own:

- ``state``            an EC2 state change: ``from``, ``to`` (``pending``, ``running``, ...)
- ``ssm_online``       the host's SSM agent registered (DescribeInstanceInformation: Online)
- ``ssm_offline``      it stopped pinging (the instance left ``running``)
- ``command_sent``     SendCommand accepted an invocation: ``command_id``
- ``command_started``  the invocation's script started: ``command_id``
- ``command_ended``    it ended: ``command_id``, ``status``, ``status_details``, ``response_code``
- ``fault``            an injected fault acted: ``fault`` (its kind) and details
- ``processes_signalled``  the host's processes got a signal: ``signal``, ``pids``
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any


def iso(moment: float) -> str:
    """``2026-11-23T00:00:05.123Z`` for a Unix time."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str | None) -> float | None:
    """Unix time of an ISO-8601 text (``Z`` or an offset), ``None`` for nothing or garbage."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class Timeline:
    """An append-only, thread-safe list of events."""

    def __init__(self, clock: Any = time.time):
        self._clock = clock
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, event: str, instance_id: str | None, role: str | None = None, **fields: Any) -> dict:
        now = self._clock()
        entry = {"t": now, "time": iso(now), "instance_id": instance_id, "role": role, "event": event}
        entry.update(fields)
        with self._lock:
            self._events.append(entry)
        return entry

    def events(
        self,
        instance_id: str | None = None,
        event: str | Iterable[str] | None = None,
        since: float | None = None,
    ) -> list[dict[str, Any]]:
        """Copies of the events, oldest first, optionally for one instance and of some kinds."""
        kinds = {event} if isinstance(event, str) else set(event) if event is not None else None
        with self._lock:
            selected = list(self._events)
        return [
            dict(entry)
            for entry in selected
            if (instance_id is None or entry["instance_id"] == instance_id)
            and (kinds is None or entry["event"] in kinds)
            and (since is None or entry["t"] >= since)
        ]

    def last(self, instance_id: str, event: str, **match: Any) -> dict[str, Any] | None:
        """The latest event of a kind for an instance whose fields equal ``match``."""
        for entry in reversed(self.events(instance_id, event)):
            if all(entry.get(key) == value for key, value in match.items()):
                return entry
        return None

    def states(self, instance_id: str) -> list[str]:
        """The EC2 states the instance went through, in order (its first known state first)."""
        changes = self.events(instance_id, "state")
        if not changes:
            return []
        first = [changes[0]["from"]] if changes[0]["from"] is not None else []
        return [*first, *[change["to"] for change in changes]]


class ApiCallLog:
    """Every AWS API call the endpoint answered, with who made it: what benchmarks count.

    Each entry has ``t``, ``service``, ``operation`` (``None`` for REST calls such as S3),
    ``status`` (the HTTP status answered), ``instances`` (how many instance IDs an EC2 call
    named, ``None`` when it named none) and ``caller``: the operator, sensor or trigger the
    Amazon provider names in its user agent (``Caller/...``), ``"airflow"`` for another Airflow
    client, or ``None`` for any other client (the agent on a host, a script).
    """

    def __init__(self, clock: Any = time.time):
        self._clock = clock
        self._calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(
        self,
        service: str,
        operation: str | None,
        *,
        status: int,
        user_agent: str = "",
        instances: int | None = None,
    ) -> dict[str, Any]:
        entry = {
            "t": self._clock(),
            "service": service,
            "operation": operation,
            "status": status,
            "instances": instances,
            "caller": caller_of(user_agent),
        }
        with self._lock:
            self._calls.append(entry)
        return entry

    def calls(self, since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
        """Copies of the calls made in ``[since, until)``, oldest first."""
        with self._lock:
            selected = list(self._calls)
        return [
            dict(entry)
            for entry in selected
            if (since is None or entry["t"] >= since) and (until is None or entry["t"] < until)
        ]


def caller_of(user_agent: str) -> str | None:
    """``Caller/<name>`` of the Amazon provider's user agent, ``"airflow"``, or ``None``."""
    airflow = False
    for token in user_agent.split():
        if token.startswith("Caller/"):
            return token[len("Caller/") :] or "airflow"
        airflow = airflow or token.startswith("Airflow/")
    return "airflow" if airflow else None
