"""Timed faults (spot interruption, rebalance, kill_agent): armed on each host at their ``since``
(``start``, ``running`` or ``command``), fired ``after`` seconds later if the host still runs."""

from __future__ import annotations

import signal
import time

from fleet_sim.ec2 import DOWN, Ec2Lifecycle
from fleet_sim.faults import ActiveFault
from fleet_sim.fleet import Fleet
from fleet_sim.hosts import Host
from fleet_sim.processes import signal_pids


class TimedFaults:
    def __init__(self, fleet: Fleet, lifecycle: Ec2Lifecycle):
        self.fleet = fleet
        self.lifecycle = lifecycle
        fleet.state_listeners.append(self._on_state_change)
        fleet.command_listeners.append(lambda host, _command_id: self.arm(host, "command"))

    def _on_state_change(self, host: Host, old: str, new: str) -> None:
        if new == "running":
            self.arm(host, "running")
        elif new in DOWN:
            host.spot_action = host.rebalance = None  # a new start is a new lifecycle
        if new != "running":
            host.imds_tokens.clear()

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
        if self.lifecycle.interrupt(host, fault.spec.action):
            self.fleet.record(
                "fault", host, fault="spot_reclaim", fault_id=fault.id, action=fault.spec.action
            )


def _iso_seconds(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))
