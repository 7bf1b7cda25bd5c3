"""A scenario: the simulator's timings and the faults to inject (format: fleet_sim/README.md)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

INSTANCE_STATES = ("stopped", "running")
SINCE = ("command", "running", "start")
SPOT_ACTIONS = ("stop", "terminate", "hibernate")
CAPACITY_CODES = ("InsufficientInstanceCapacity", "InsufficientHostCapacity", "InsufficientCapacity")


class ScenarioError(ValueError):
    """A bad scenario; the message names the field and the bad value."""


@dataclass(frozen=True)
class FaultSpec:
    """One fault as written: its ``kind``, its target (``role`` or ``instance``, none for a throttle)
    and its kind's parameters (the others are ``None``), validated."""

    kind: str
    role: str | None = None
    instance: str | None = None
    operation: str | None = None
    service: str | None = None
    count: int | None = None
    seconds: float | None = None
    after: float | None = None
    since: str | None = None
    action: str | None = None
    notice_seconds: float | None = None
    match: str | None = None
    signal: int | None = None
    code: str | None = None

    def matches(self, instance_id: str, role: str | None) -> bool:
        if self.instance is not None:
            return instance_id == self.instance
        return role is not None and role == self.role

    def to_dict(self) -> dict[str, Any]:
        document = {key: getattr(self, key) for key in ("kind", "role", "instance") if getattr(self, key)}
        for key in _KIND_FIELDS[self.kind]:
            value = getattr(self, key)
            document[key] = signal.Signals(value).name if key == "signal" else value
        return document


@dataclass(frozen=True)
class Scenario:
    transition_delay: float = 0.5
    registration_delay: float = 1.0
    ready_delay: float = 0.5  # from running to a group instance's code-server answering /healthz
    delivery_delay: float = 0.1
    initial_state: str = "stopped"
    instance_type: str = "t3.micro"
    faults: tuple[FaultSpec, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            **{key: getattr(self, key) for key in _SETTINGS},
            "faults": [f.to_dict() for f in self.faults],
        }


# The parameters each kind takes besides its target, with their defaults: REQUIRED, or None for
# one unset by default (a capacity fault without a count never ends).
REQUIRED = object()
_KIND_FIELDS: dict[str, dict[str, Any]] = {
    "throttle": {"operation": REQUIRED, "service": None, "count": 1},
    "capacity": {"count": None, "code": "InsufficientInstanceCapacity"},
    "stuck_stopping": {"seconds": REQUIRED, "count": 1},
    "registration_delay": {"seconds": REQUIRED},
    "spot_interruption": {"after": 0.0, "since": "command", "action": "stop", "notice_seconds": 120.0},
    "rebalance": {"after": 0.0, "since": "command"},
    "kill_agent": {"after": 0.0, "since": "command", "match": "instance_agent", "signal": signal.SIGKILL},
    "never_ready": {"count": None},  # a group instance whose code-server never answers
    "imds_unauthorized": {"count": 1},
    "imds_error": {"count": None},
    "imds_delay": {"seconds": REQUIRED, "count": None},
    # The call is carried out, its answer held back `seconds`: a caller killed meanwhile (the pool's
    # API server between its claim and its reply) never learns that it succeeded.
    "slow_reply": {"operation": REQUIRED, "service": None, "seconds": REQUIRED, "count": 1},
}
FAULT_KINDS = tuple(_KIND_FIELDS)
_TARGETLESS = ("throttle", "slow_reply")
_SETTINGS = (
    "transition_delay",
    "registration_delay",
    "ready_delay",
    "delivery_delay",
    "initial_state",
    "instance_type",
)


def load_scenario(source: Scenario | Mapping[str, Any] | str | os.PathLike[str] | None) -> Scenario:
    """A :class:`Scenario` from a file (YAML or JSON), a dict, or ``None`` (the defaults)."""
    if source is None:
        return Scenario()
    if isinstance(source, Scenario):
        return source
    if isinstance(source, Mapping):
        return parse_scenario(source, "scenario")
    path = os.fspath(source)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read the scenario: {error.strerror or error}") from None
    try:
        document = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise ScenarioError(
            f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: {error}"
        ) from None
    return parse_scenario(document or {}, path)


def parse_scenario(document: Any, source: str = "scenario") -> Scenario:
    if not isinstance(document, Mapping):
        raise ScenarioError(f"{source}: expected a mapping, got {_short(document)}")
    unknown = [key for key in document if key not in (*_SETTINGS, "faults")]
    if unknown:
        raise ScenarioError(
            f"{source}: unknown key {unknown[0]!r} (allowed: {', '.join((*_SETTINGS, 'faults'))})"
        )
    settings = {key: _CHECKS[key](document[key], f"{source}: {key}") for key in _SETTINGS if key in document}
    raw_faults = document.get("faults") or []
    if not isinstance(raw_faults, list):
        raise ScenarioError(f"{source}: faults: expected a list, got {_short(raw_faults)}")
    faults = tuple(parse_fault(raw, f"{source}: faults[{index}]") for index, raw in enumerate(raw_faults))
    return Scenario(faults=faults, **settings)


def parse_fault(raw: Any, where: str = "fault") -> FaultSpec:
    """One fault from its dict form, e.g. ``{"kind": "throttle", "operation": "StartInstances"}``."""
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{where}: expected a mapping, got {_short(raw)}")
    kind = raw.get("kind")
    if kind not in _KIND_FIELDS:
        raise ScenarioError(f"{where}.kind: expected one of {', '.join(FAULT_KINDS)}, got {_short(kind)}")
    fields = _KIND_FIELDS[kind]
    allowed = ("kind", *fields, *(() if kind in _TARGETLESS else ("role", "instance")))
    unknown = [key for key in raw if key not in allowed]
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key {unknown[0]!r} for a {kind} fault (allowed: {', '.join(allowed)})"
        )
    values: dict[str, Any] = {"kind": kind}
    if kind not in _TARGETLESS:
        if (raw.get("role") is None) == (raw.get("instance") is None):
            raise ScenarioError(f"{where}: give exactly one of 'role' or 'instance'")
        values.update(
            {
                key: _text(raw[key], f"{where}.{key}")
                for key in ("role", "instance")
                if raw.get(key) is not None
            }
        )
    for key, default in fields.items():
        if raw.get(key) is not None:
            values[key] = _CHECKS[key](raw[key], f"{where}.{key}")
        elif default is REQUIRED:
            raise ScenarioError(f"{where}.{key}: missing")
        else:
            values[key] = default
    return FaultSpec(**values)


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        raise ScenarioError(f"{where}: expected a number of seconds (0 or more), got {_short(value)}")
    return float(value)


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ScenarioError(f"{where}: expected a whole number of at least 1, got {_short(value)}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ScenarioError(f"{where}: expected a non-empty string, got {_short(value)}")
    return value


def _choice(*choices: str) -> Callable[[Any, str], str]:
    def check(value: Any, where: str) -> str:
        if value not in choices:
            raise ScenarioError(f"{where}: expected one of {', '.join(choices)}, got {_short(value)}")
        return value

    return check


def _signal(value: Any, where: str) -> int:
    name = value.upper() if isinstance(value, str) else ""
    name = name if name.startswith("SIG") else f"SIG{name}"
    if name in signal.Signals.__members__:
        return int(signal.Signals[name])
    if isinstance(value, int) and not isinstance(value, bool) and value in set(signal.Signals):
        return value
    raise ScenarioError(f"{where}: expected a signal name like SIGKILL or SIGTERM, got {_short(value)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    **dict.fromkeys(("transition_delay", "registration_delay", "ready_delay", "delivery_delay"), _seconds),
    **dict.fromkeys(("seconds", "after", "notice_seconds"), _seconds),
    **dict.fromkeys(("instance_type", "operation", "match"), _text),
    "initial_state": _choice(*INSTANCE_STATES),
    "since": _choice(*SINCE),
    "action": _choice(*SPOT_ACTIONS),
    "code": _choice(*CAPACITY_CODES),
    "count": _count,
    "service": lambda value, where: _text(value, where).lower(),
    "signal": _signal,
}
