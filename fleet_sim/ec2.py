"""EC2 instance lifecycle as AWS has it, where moto flips states at once (fleet_sim/README.md):
Start/StopInstances of known instances; instances made any other way are adopted as hosts. Timed
faults (spot interruption, rebalance, kill_agent) are armed on each host at their ``since``
(``start``, ``running`` or ``command``) and fire ``after`` seconds later if the host still runs."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterable
from typing import Any
from xml.sax.saxutils import escape

from moto.ec2.models.instances import StateReason

from fleet_sim.aws_errors import AwsError
from fleet_sim.faults import ActiveFault
from fleet_sim.fleet import ROLE_TAG, Fleet
from fleet_sim.groups import set_group_lifecycle
from fleet_sim.hosts import Host
from fleet_sim.processes import signal_pids

STATE_CODES = {
    "pending": 0,
    "running": 16,
    "shutting-down": 32,
    "terminated": 48,
    "stopping": 64,
    "stopped": 80,
}
GOING_DOWN = ("stopping", "shutting-down")
DOWN = ("stopped", "terminated")

# A spot interruption's state reason: Server.SpotInstance<word>.
SPOT_REASONS = {"stop": "Shutdown", "hibernate": "Hibernate", "terminate": "Termination"}


class Ec2Lifecycle:
    def __init__(self, fleet: Fleet):
        self.fleet = fleet
        fleet.command_listeners.append(lambda host, _command_id: self.arm(host, "command"))

    def handles(self, operation: str, params: dict[str, list[str]]) -> bool:
        """Start/Stop of known instances; dry runs and unknown IDs go to moto for its errors."""
        if operation not in ("StartInstances", "StopInstances") or _flag(params, "DryRun"):
            return False
        ids = instance_ids(params)
        with self.fleet.lock:
            self.sync()
            return bool(ids) and all(instance_id in self.fleet.hosts for instance_id in ids)

    def respond(self, operation: str, params: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        ids = instance_ids(params)
        changes = (
            self.start(ids) if operation == "StartInstances" else self.stop(ids, force=_flag(params, "Force"))
        )
        element = f"{operation}Response"
        items = "".join(
            f"<item><instanceId>{escape(instance_id)}</instanceId>"
            f"<currentState><code>{STATE_CODES[current]}</code><name>{current}</name></currentState>"
            f"<previousState><code>{STATE_CODES[previous]}</code><name>{previous}</name></previousState>"
            "</item>"
            for instance_id, previous, current in changes
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<{element} xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
            f"<requestId>{uuid.uuid4()}</requestId><instancesSet>{items}</instancesSet></{element}>"
        ).encode()
        return 200, {"Content-Type": "text/xml;charset=UTF-8"}, body

    def start(self, ids: Iterable[str]) -> list[tuple[str, str, str]]:
        """Start instances; ``[(id, previous state, current state)]``."""
        with self.fleet.lock:
            hosts, changes = self._hosts(ids, (*GOING_DOWN, "terminated"), "started"), []
            for host in hosts:
                previous = host.state
                if previous == "stopped":
                    self.fleet.moto_instance(host.instance_id).start()  # moto's side effects (NICs, reasons)
                    self._enter(host, "pending")
                    self._schedule(host, "running")
                changes.append((host.instance_id, previous, host.state))
            return changes

    def stop(self, ids: Iterable[str], *, force: bool = False) -> list[tuple[str, str, str]]:
        """Stop instances; ``[(id, previous state, current state)]``."""
        with self.fleet.lock:
            hosts, changes = self._hosts(ids, ("pending", "shutting-down", "terminated"), "stopped"), []
            for host in hosts:
                previous = host.state
                if previous == "running":
                    self.fleet.moto_instance(host.instance_id).stop()  # reason: user initiated
                    host.force_stop = force
                    self._enter(host, "stopping")
                    self._schedule(host, "stopped", self._stop_delay(host, force))
                elif previous == "stopping" and force and not host.force_stop:
                    # A forced stop ends a stop that hangs, and kills what still runs.
                    host.force_stop = True
                    self._signal(host, signal.SIGKILL, "forced stop")
                    self._schedule(host, "stopped")
                changes.append((host.instance_id, previous, host.state))
            return changes

    def _hosts(self, ids: Iterable[str], refused: tuple[str, ...], verb: str) -> list[Host]:
        """The hosts, if none is in a ``refused`` state (the whole call fails, as on AWS)."""
        hosts = [self.fleet.host(instance_id) for instance_id in ids]
        for host in hosts:
            if host.state in refused:
                message = f"The instance '{host.instance_id}' is not in a state from which it can be {verb}."
                raise AwsError("IncorrectInstanceState", message)
        return hosts

    def interrupt(self, host: Host, action: str) -> bool:
        """A spot interruption: EC2 stops (or hibernates, or terminates) the instance itself."""
        with self.fleet.lock:
            if host.state != "running":
                return False
            instance = self.fleet.moto_instance(host.instance_id)
            instance.stop()
            code = f"Server.SpotInstance{SPOT_REASONS[action]}"
            message = f"{code}: Spot Instance {SPOT_REASONS[action].lower()}"
            instance.state_reason = StateReason(message, code)
            instance._reason = message
            host.force_stop = False
            self._enter(host, "shutting-down" if action == "terminate" else "stopping")
            self._schedule(host, "terminated" if action == "terminate" else "stopped")
            return True

    def sync(self) -> None:
        """Take note of instances and state changes made in moto behind the lifecycle's back."""
        with self.fleet.lock:
            for instance in self.fleet.ec2_backend.all_instances():
                host = self.fleet.hosts.get(instance.id)
                actual = instance._state.name
                if host is None:
                    self._adopt(instance)
                elif actual != host.state:
                    self.fleet.scheduler.cancel(host.transition)
                    host.transition = None
                    self._changed(host, host.state, actual)

    def _adopt(self, instance: Any) -> None:
        role = self.fleet.tags(instance.id).get(ROLE_TAG)
        # The simulator's own start in their initial state; RunInstances through the front, made
        # running at once by moto, go through pending as on AWS.
        state = self.fleet.scenario.initial_state if self.fleet.creating else "pending"
        host = self.fleet.add_host(instance.id, role, state)
        if state == "stopped":
            instance.stop()
        self._set_moto_state(instance, state)
        set_group_lifecycle(self.fleet, host)
        self.fleet.record("state", host, **{"from": None, "to": state})
        if self.fleet.creating:
            self.fleet.state_changed(host, "pending", state)
        else:
            self._schedule(host, "running")

    def _stop_delay(self, host: Host, force: bool) -> float:
        fault = None if force else self.fleet.faults.take("stuck_stopping", host.instance_id, host.role)
        if fault is None:
            return self.fleet.scenario.transition_delay
        self.fleet.record(
            "fault", host, fault="stuck_stopping", fault_id=fault.id, seconds=fault.spec.seconds
        )
        return fault.spec.seconds

    def _schedule(self, host: Host, target: str, delay: float | None = None) -> None:
        """Move the host from its state to ``target`` in ``delay`` (default: the transition delay).

        Called under the lock, so ``handle`` is set before ``finish`` can run.
        """
        self.fleet.scheduler.cancel(host.transition)
        expected = host.state

        def finish() -> None:
            with self.fleet.lock:
                if host.transition != handle or host.state != expected:
                    return  # overtaken by another change
                host.transition = None
                if target == "terminated":
                    self.fleet.moto_instance(host.instance_id).terminate()
                self._enter(host, target)

        delay = self.fleet.scenario.transition_delay if delay is None else delay
        handle = host.transition = self.fleet.scheduler.call_later(delay, finish)

    def _enter(self, host: Host, state: str) -> None:
        self._set_moto_state(self.fleet.moto_instance(host.instance_id), state)
        self._changed(host, host.state, state)

    def _changed(self, host: Host, old: str, new: str) -> None:
        host.state = new
        self.fleet.record("state", host, **{"from": old, "to": new})
        if new in GOING_DOWN:
            # The OS shuts down: SIGTERM to everything, SIGKILL once the instance is down.
            self._signal(host, signal.SIGKILL if host.force_stop else signal.SIGTERM, f"instance {new}")
        elif new in DOWN:
            self._signal(host, signal.SIGKILL, f"instance {new}")
            host.force_stop = False
            host.spot_action = host.rebalance = None  # a new start is a new lifecycle
        if new == "running":
            host.running_since = time.monotonic()
            self.arm(host, "running")
        else:
            host.running_since = None
            host.imds_tokens.clear()
        set_group_lifecycle(self.fleet, host)
        self.fleet.state_changed(host, old, new)

    def _signal(self, host: Host, signum: int, why: str) -> None:
        pids = host.signal_all(signum)
        if pids:
            self.fleet.record(
                "processes_signalled", host, signal=signal.Signals(signum).name, pids=pids, reason=why
            )

    def arm(self, host: Host, since: str) -> None:
        with self.fleet.lock:
            for fault in self.fleet.faults.arm(host.instance_id, host.role, since):
                self.fleet.scheduler.call_later(fault.spec.after, lambda fault=fault: self._fire(fault, host))

    def _fire(self, fault: ActiveFault, host: Host) -> None:
        spec = fault.spec
        with self.fleet.lock:
            if host.state != "running" or fault not in self.fleet.faults.all():
                return  # the instance went down first, or the fault was removed
            fault.use()
            now = time.time()
            if spec.kind == "spot_interruption":
                host.spot_action = {"action": spec.action, "time": _iso_seconds(now + spec.notice_seconds)}
                details = host.spot_action
                self.fleet.scheduler.call_later(spec.notice_seconds, lambda: self._reclaim(fault, host))
            elif spec.kind == "rebalance":
                details = host.rebalance = {"noticeTime": _iso_seconds(now)}
            else:  # kill_agent
                pids = [pid for pid, line in host.processes().items() if spec.match in line]
                details = {"pids": signal_pids(pids, spec.signal), "signal": signal.Signals(spec.signal).name}
            self.fleet.record("fault", host, fault=spec.kind, fault_id=fault.id, **details)

    def _reclaim(self, fault: ActiveFault, host: Host) -> None:
        if self.interrupt(host, fault.spec.action):
            self.fleet.record(
                "fault", host, fault="spot_reclaim", fault_id=fault.id, action=fault.spec.action
            )

    @staticmethod
    def _set_moto_state(instance: Any, state: str) -> None:
        instance._state.name = state
        instance._state.code = STATE_CODES[state]


def instance_ids(params: dict[str, list[str]]) -> list[str]:
    """``InstanceId.N`` values of an EC2 query request, in order."""
    numbered = [
        (int(key.split(".", 1)[1]), values[0])
        for key, values in params.items()
        if key.startswith("InstanceId.") and key.split(".", 1)[1].isdigit() and values
    ]
    return [value for _, value in sorted(numbered)]


def _flag(params: dict[str, list[str]], name: str) -> bool:
    return (params.get(name) or ["false"])[0].lower() == "true"


def _iso_seconds(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))
