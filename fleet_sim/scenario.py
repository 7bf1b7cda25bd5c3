"""A scenario: the simulator's timings and the faults to inject (format: fleet_sim/README.md)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

INSTANCE_STATES = ("stopped", "running")
SINCE = ("command", "running", "start")
SPOT_ACTIONS = ("stop", "terminate", "hibernate")
CAPACITY_CODES = ("InsufficientInstanceCapacity", "InsufficientHostCapacity", "InsufficientCapacity")


class ScenarioError(ValueError):
    """A bad scenario; the message names the field and the bad value."""


@dataclass(frozen=True)
class Target:
    role: str | None = None
    instance: str | None = None

    def matches(self, instance_id: str, role: str | None) -> bool:
        if self.instance is not None:
            return instance_id == self.instance
        return role is not None and role == self.role


@dataclass(frozen=True)
class FaultSpec:
    """One fault as written: its ``kind``, target and parameters (validated)."""

    kind: str
    target: Target | None = None
    operation: str | None = None
    service: str | None = None
    count: int | None = None
    seconds: float | None = None
    after: float = 0.0
    since: str = "command"
    action: str = "stop"
    notice_seconds: float = 120.0
    match: str = "instance_agent"
    signal: int = signal.SIGKILL
    code: str = "InsufficientInstanceCapacity"

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"kind": self.kind}
        if self.target is not None:
            document.update({key: value for key, value in self.target.__dict__.items() if value})
        for key in _KIND_FIELDS[self.kind]:
            value = getattr(self, key)
            document[key] = signal.Signals(value).name if key == "signal" else value
        return document


@dataclass(frozen=True)
class Scenario:
    transition_delay: float = 0.5
    registration_delay: float = 1.0
    delivery_delay: float = 0.1
    initial_state: str = "stopped"
    instance_type: str = "t3.micro"
    faults: tuple[FaultSpec, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            **{key: getattr(self, key) for key in _SETTINGS},
            "faults": [f.to_dict() for f in self.faults],
        }


# The parameters each kind takes besides its target, with their defaults: `None` marks a
# required one, "" one that is unset by default (a capacity fault without a count never ends).
_KIND_FIELDS: dict[str, dict[str, Any]] = {
    "throttle": {"operation": None, "service": "", "count": 1},
    "capacity": {"count": "", "code": "InsufficientInstanceCapacity"},
    "stuck_stopping": {"seconds": None, "count": 1},
    "registration_delay": {"seconds": None},
    "spot_interruption": {"after": 0.0, "since": "command", "action": "stop", "notice_seconds": 120.0},
    "rebalance": {"after": 0.0, "since": "command"},
    "kill_agent": {"after": 0.0, "since": "command", "match": "instance_agent", "signal": "SIGKILL"},
}
FAULT_KINDS = tuple(_KIND_FIELDS)
_TARGETLESS = ("throttle",)
_SETTINGS = ("transition_delay", "registration_delay", "delivery_delay", "initial_state", "instance_type")


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
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
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
    checks = {
        "initial_state": lambda value, where: _choice(value, INSTANCE_STATES, where),
        "instance_type": _text,
    }
    settings = {
        key: checks.get(key, _seconds)(document[key], f"{source}: {key}")
        for key in _SETTINGS
        if key in document
    }
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
        role, instance = raw.get("role"), raw.get("instance")
        if (role is None) == (instance is None):
            raise ScenarioError(f"{where}: give exactly one of 'role' or 'instance'")
        values["target"] = Target(
            role=_text(role, f"{where}.role") if role is not None else None,
            instance=_text(instance, f"{where}.instance") if instance is not None else None,
        )
    for key, default in fields.items():
        value = raw.get(key)
        if value is None:
            if default is None:
                raise ScenarioError(f"{where}.{key}: missing")
            value = None if default == "" else default  # "": no limit / not set
        values[key] = None if value is None else _field(key, value, f"{where}.{key}")
    return FaultSpec(**values)


def _field(key: str, value: Any, where: str) -> Any:
    choices = {"since": SINCE, "action": SPOT_ACTIONS, "code": CAPACITY_CODES}
    if key in choices:
        return _choice(value, choices[key], where)
    if key == "count":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ScenarioError(f"{where}: expected a whole number of at least 1, got {_short(value)}")
        return value
    if key in ("seconds", "after", "notice_seconds"):
        return _seconds(value, where)
    if key == "signal":
        return _signal(value, where)
    return _text(value, where).lower() if key == "service" else _text(value, where)


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        raise ScenarioError(f"{where}: expected a number of seconds (0 or more), got {_short(value)}")
    return float(value)


def _choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise ScenarioError(f"{where}: expected one of {', '.join(choices)}, got {_short(value)}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ScenarioError(f"{where}: expected a non-empty string, got {_short(value)}")
    return value


def _signal(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return int(signal.Signals(value))
        except ValueError:
            pass
    if isinstance(value, str):
        name = value.upper() if value.upper().startswith("SIG") else f"SIG{value.upper()}"
        if hasattr(signal.Signals, name):
            return int(signal.Signals[name])
    raise ScenarioError(f"{where}: expected a signal name like SIGKILL or SIGTERM, got {_short(value)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
