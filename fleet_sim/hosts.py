"""One simulated host per EC2 instance: its sandbox (its disk and ``HOME``), environment, processes."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from fleet_sim.processes import command_line, marked_pids, signal_pids


class ImdsRequest(NamedTuple):
    method: str
    path: str
    status: int
    ttl: str | None  # the TTL header of a token request


@dataclass
class Host:
    instance_id: str
    role: str | None
    sandbox: Path
    marker: str
    state: str = "pending"
    # SSM: `registered` once it ever registered (listed from then on), `online` while it pings.
    ssm_registered: bool = False
    ssm_online: bool = False
    last_ping: float | None = None
    registered_at: float | None = None
    # Scheduler handles of the pending state transition and SSM registration.
    transition: Any = None
    registration: Any = None
    force_stop: bool = False
    running_since: float | None = None  # monotonic time it last became running
    # IMDS: tokens (token -> monotonic expiry), every request answered, the notices it serves.
    imds_tokens: dict[str, float] = field(default_factory=dict)
    imds_requests: list[ImdsRequest] = field(default_factory=list)
    spot_action: dict[str, Any] | None = None
    rebalance: dict[str, Any] | None = None

    def pids(self) -> list[int]:
        return marked_pids(self.marker)

    def processes(self) -> dict[int, str]:
        """``{pid: command line}`` of every live process of this host."""
        return {pid: command_line(pid) for pid in self.pids()}

    def signal_all(self, signum: int = signal.SIGKILL) -> list[int]:
        return signal_pids(self.pids(), signum)
