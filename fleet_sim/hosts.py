"""One simulated host per EC2 instance: its sandbox (its disk and ``HOME``), environment, processes."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet_sim.processes import MARKER_VARIABLE, command_line, marked_pids, signal_pids


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
    transition: int | None = None
    registration: int | None = None
    force_stop: bool = False
    # IMDS: tokens (token -> monotonic expiry) and the notices it serves.
    imds_tokens: dict[str, float] = field(default_factory=dict)
    spot_action: dict[str, Any] | None = None
    rebalance: dict[str, Any] | None = None

    def environment(
        self, *, endpoint_url: str, region: str, imds_url: str, python_bin: str, repo_root: str
    ) -> dict[str, str]:
        """A clean environment, as on a fresh VM, pointed at the simulator: only ``PATH`` (behind the
        venv's ``bin``: ``python3`` has boto3) and the locale come from the simulator's own."""
        path = os.pathsep.join(filter(None, [python_bin, os.environ.get("PATH", "/usr/bin:/bin")]))
        return {
            "PATH": path,
            "HOME": str(self.sandbox),
            "USER": "root",
            "SHELL": "/bin/bash",
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "TMPDIR": str(self.sandbox / "tmp"),
            "PYTHONPATH": repo_root,
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": region,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds_url,
            MARKER_VARIABLE: self.marker,
        }

    def prepare_sandbox(self) -> None:
        (self.sandbox / "tmp").mkdir(parents=True, exist_ok=True)

    # -- processes --------------------------------------------------------------------------------

    def pids(self) -> list[int]:
        return marked_pids(self.marker)

    def processes(self) -> dict[int, str]:
        """``{pid: command line}`` of every live process of this host."""
        return {pid: command_line(pid) for pid in self.pids()}

    def signal_all(self, signum: int = signal.SIGKILL) -> list[int]:
        return signal_pids(self.pids(), signum)
