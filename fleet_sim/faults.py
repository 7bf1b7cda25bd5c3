"""The faults in force, each with its remaining count; every method runs under the fleet's lock."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from fleet_sim.aws_errors import AwsError, capacity_error, throttling_error
from fleet_sim.scenario import FaultSpec, parse_fault

TIMED_KINDS = ("spot_interruption", "rebalance", "kill_agent")


@dataclass
class ActiveFault:
    id: int
    spec: FaultSpec
    remaining: int | None  # None: no limit
    fired: int = 0
    armed: set[str] = field(default_factory=set)  # instances a timed fault is scheduled on

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def use(self) -> None:
        self.fired += 1
        if self.remaining is not None:
            self.remaining -= 1

    def applies_to(self, instance_id: str, role: str | None) -> bool:
        return self.spec.matches(instance_id, role)

    def to_dict(self) -> dict:
        return {"id": self.id, **self.spec.to_dict(), "fired": self.fired, "remaining": self.remaining}


class FaultBook:
    def __init__(self, specs: Iterable[FaultSpec] = ()):
        self._ids = itertools.count(1)
        self._faults: list[ActiveFault] = []
        for spec in specs:
            self.add(spec)

    def add(self, spec: FaultSpec | dict) -> ActiveFault:
        if not isinstance(spec, FaultSpec):
            spec = parse_fault(spec)
        # Timed faults fire once per instance (`armed` says where); a registration delay always holds.
        remaining = None if spec.kind in (*TIMED_KINDS, "registration_delay") else spec.count
        fault = ActiveFault(next(self._ids), spec, remaining)
        self._faults.append(fault)
        return fault

    def remove(self, fault_id: int) -> None:
        self._faults = [fault for fault in self._faults if fault.id != fault_id]

    def all(self) -> list[ActiveFault]:
        return list(self._faults)

    def api_error(
        self,
        service: str,
        operation: str,
        instances: Iterable[tuple[str, str | None, str, str]] = (),
    ) -> tuple[ActiveFault, AwsError] | None:
        """The error a fault makes this call fail with, or ``None``; ``instances``: StartInstances'
        ``(instance id, role, instance type, zone)``, for capacity faults."""
        throttle = self.on_call("throttle", service, operation)
        if throttle is not None:
            return throttle, throttling_error(service, operation)
        if service == "ec2" and operation == "StartInstances":
            for instance_id, role, instance_type, zone in instances:
                fault = self.take("capacity", instance_id, role)
                if fault is not None:
                    return fault, capacity_error(fault.spec.code, instance_id, instance_type, zone)
        return None

    def on_call(self, kind: str, service: str, operation: str) -> ActiveFault | None:
        """A fault of ``kind`` on this API call (``throttle``, ``slow_reply``), one use taken; or ``None``."""
        for fault in self._faults:
            spec = fault.spec
            this_call = spec.operation == operation and spec.service in (None, service)
            if spec.kind == kind and not fault.exhausted and this_call:
                fault.use()
                return fault
        return None

    def take(self, kind: str, instance_id: str, role: str | None) -> ActiveFault | None:
        """The first fault of ``kind`` in force on this instance, one use of its count taken; or ``None``."""
        for fault in self._faults:
            if fault.spec.kind == kind and not fault.exhausted and fault.applies_to(instance_id, role):
                fault.use()
                return fault
        return None

    def registration_delay(self, instance_id: str, role: str | None, default: float) -> float:
        for fault in reversed(self._faults):  # the latest one added wins
            if fault.spec.kind == "registration_delay" and fault.applies_to(instance_id, role):
                return fault.spec.seconds
        return default

    def arm(self, instance_id: str, role: str | None, since: str) -> list[ActiveFault]:
        """Timed faults to schedule now on this instance for ``since``; each is armed once per instance."""
        armed = []
        for fault in self._faults:
            if (
                fault.spec.kind in TIMED_KINDS
                and fault.spec.since == since
                and instance_id not in fault.armed
                and fault.applies_to(instance_id, role)
            ):
                fault.armed.add(instance_id)
                armed.append(fault)
        return armed
