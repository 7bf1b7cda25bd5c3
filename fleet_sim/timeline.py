"""What happened, and when: the timeline of each instance and the log of AWS calls answered.

Timeline entries have ``t`` (Unix time), ``time`` (UTC ISO-8601), ``instance_id``, ``role``,
``event`` (``state``, ``ssm_online``, ``ssm_offline``, ``command_sent``, ``command_started``,
``command_ended``, ``fault``, ``processes_signalled``, ...) and fields of their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from instance_agent.protocol import parse_utc


def iso(moment: float) -> str:
    """``2026-11-23T00:00:05.123Z`` for a Unix time."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str | None) -> float | None:
    """Unix time of an ISO-8601 text (``Z`` or an offset), ``None`` for nothing or garbage."""
    moment = parse_utc(text)
    return None if moment is None else moment.timestamp()


class _Log:
    """An append-only, thread-safe list of dicts."""

    def __init__(self, clock: Any = time.time):
        self._clock = clock
        self._entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _append(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._entries.append(entry)
        return entry

    def _select(self, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        with self._lock:
            entries = list(self._entries)
        return [dict(entry) for entry in entries if keep(entry)]


class Timeline(_Log):
    def record(self, event: str, instance_id: str | None, role: str | None = None, **fields: Any) -> dict:
        now = self._clock()
        entry = {"t": now, "time": iso(now), "instance_id": instance_id, "role": role, "event": event}
        return self._append({**entry, **fields})

    def events(self, instance_id: str | None = None, event: str | None = None) -> list[dict]:
        """Copies of the events, oldest first, optionally for one instance and of one kind."""
        return self._select(
            lambda entry: instance_id in (None, entry["instance_id"]) and event in (None, entry["event"])
        )

    def states(self, instance_id: str) -> list[str]:
        """The EC2 states the instance went through, in order (its first known state first)."""
        changes = self.events(instance_id, "state")
        first = [changes[0]["from"]] if changes and changes[0]["from"] is not None else []
        return [*first, *[change["to"] for change in changes]]


class ApiCallLog(_Log):
    """Every AWS call answered: ``t``, ``service``, ``operation`` (``None`` for REST calls such as
    S3), ``status``, ``instances`` (instance IDs an EC2 call named, else ``None``), ``caller``
    (see :func:`caller_of`) and ``params``: the request's parameters (the JSON body, or a query
    request's fields but ``Action`` and ``Version``), ``None`` for REST calls."""

    def record(
        self,
        service: str,
        operation: str | None,
        *,
        status: int,
        user_agent: str = "",
        instances: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self._append(
            {
                "t": self._clock(),
                "service": service,
                "operation": operation,
                "status": status,
                "instances": instances,
                "caller": caller_of(user_agent),
                "params": params,
            }
        )

    def calls(self, since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
        """Copies of the calls made in ``[since, until)``, oldest first."""
        return self._select(
            lambda entry: (since is None or entry["t"] >= since) and (until is None or entry["t"] < until)
        )


def caller_of(user_agent: str) -> str | None:
    """``Caller/<name>`` of the Amazon provider's user agent, ``"airflow"``, or ``None``."""
    airflow = False
    for token in user_agent.split():
        if token.startswith("Caller/"):
            return token[len("Caller/") :] or "airflow"
        airflow = airflow or token.startswith("Airflow/")
    return "airflow" if airflow else None
