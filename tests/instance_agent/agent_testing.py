"""Helpers for the agent's tests: run the real agent as a subprocess; its IMDS and AWS are fleet_sim's.

The agent under test runs on ``FLEET_AGENT_PYTHON`` when set (e.g. a Python 3.9 with boto3, the
interpreter of Amazon Linux 2023), else on the interpreter running the tests. The fixtures built
on these are in this folder's ``conftest.py``; tests import the helpers from here, never from
``conftest`` (every test folder has one, and which one ``import conftest`` finds depends on the
order pytest collected them in).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fleet_testing import wait_for

from fleet_sim import FleetSimulator
from fleet_sim.hosts import ImdsRequest
from instance_agent.imds import TOKEN_PATH

REPO = Path(__file__).resolve().parents[2]
AGENT_PYTHON = os.environ.get("FLEET_AGENT_PYTHON", sys.executable)
RUN_DATE = "2026-11-23"
ROLE = "tasks"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Agent:
    """The agent as a user runs it: ``python -m instance_agent ...`` in a sandbox directory."""

    def __init__(self, root: Path):
        self.root = root
        self.state_dir = root / "state"
        self.log_dir = root / "logs"
        self.work = root / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_ENDPOINT_URL", "AWS_EC2_METADATA", "PYTEST_"))
        }
        self.env.update({"PYTHONPATH": str(REPO), "AWS_EC2_METADATA_DISABLED": "true"})

    def use_imds(self, url: str) -> None:
        self.env.pop("AWS_EC2_METADATA_DISABLED", None)
        self.env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = url

    # -- inputs ---------------------------------------------------------------------------------

    def script(self, name: str, body: str) -> str:
        """A small Python job script; returns its path."""
        path = self.work / name
        path.write_text(body)
        return str(path)

    def counting_job(self, name: str, *, sleep: float = 0.0, exit_code: int = 0, **extra: Any) -> dict:
        """A job that appends a line to ``<work>/<name>.count`` (so tests count its executions)."""
        script = self.script(
            f"{name}.py",
            "import os, sys, time\n"
            f"with open({str(self.work / (name + '.count'))!r}, 'a') as f:\n"
            "    f.write(' '.join([os.environ['RUN_DATE'], os.environ['ROLE'], str(os.getpid())]) + '\\n')\n"
            f"time.sleep({sleep})\n"
            f"sys.exit({exit_code})\n",
        )
        return {"name": name, "argv": [sys.executable, script], **extra}

    def count(self, name: str) -> int:
        path = self.work / f"{name}.count"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def spec(self, jobs: list, **settings: Any) -> str:
        path = self.root / f"spec-{time.monotonic_ns()}.json"
        path.write_text(json.dumps({"jobs": jobs, **settings}))
        return str(path)

    # -- running --------------------------------------------------------------------------------

    def command(
        self,
        spec: str,
        *extra: str,
        date: str = RUN_DATE,
        role: str = ROLE,
        shutdown: str = "none",
        foreground: bool = True,
    ) -> list[str]:
        command = [
            AGENT_PYTHON,
            "-m",
            "instance_agent",
            "run",
            "--role",
            role,
            "--date",
            date,
            "--spec",
            spec,
            "--shutdown",
            shutdown,
            "--state-dir",
            str(self.state_dir),
            "--log-dir",
            str(self.log_dir),
            "--imds-poll-seconds",
            "0.2",
            *extra,
        ]
        return command + (["--foreground"] if foreground else [])

    def run(self, spec: str, *extra: str, timeout: float = 60, input: str | None = None, **kwargs: Any):
        return subprocess.run(
            self.command(spec, *extra, **kwargs),
            env=self.env,
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )

    def start(self, spec: str, *extra: str, **kwargs: Any) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(spec, *extra, **kwargs),
            env=self.env,
            cwd=self.work,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def cli(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            [AGENT_PYTHON, "-m", "instance_agent", *args],
            env=self.env,
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    # -- outputs --------------------------------------------------------------------------------

    def state_path(self, date: str = RUN_DATE) -> Path:
        return self.state_dir / f"{date}.json"

    def state(self, date: str = RUN_DATE) -> dict:
        return json.loads(self.state_path(date).read_text())

    def job(self, name: str, date: str = RUN_DATE) -> dict:
        return self.state(date)["jobs"][name]

    def agent_log(self, date: str = RUN_DATE) -> str:
        path = self.log_dir / date / "_agent.log"
        return path.read_text() if path.exists() else ""

    def wait_job_status(self, name: str, status: str, timeout: float = 10.0) -> dict:
        def check() -> dict | None:
            try:
                record = self.job(name)
            except (OSError, ValueError, KeyError):
                return None
            return record if record["status"] == status and record.get("pid") else None

        return wait_for(check, timeout, what=f"job {name} {status}")

    def wait_finished(self, date: str = RUN_DATE, timeout: float = 20.0) -> dict:
        """Wait for a detached run: final state written and the lock released."""

        def check() -> dict | None:
            try:
                state = self.state(date)
            except (OSError, ValueError):
                return None
            if state["state"] == "running" or state["agent"].get("ended_at") is None:
                return None
            return state if not _lock_held(self.state_dir / "agent.lock") else None

        return wait_for(check, timeout, what="the detached agent to finish")


def _lock_held(path: Path) -> bool:
    import fcntl

    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


class SimImds:
    """fleet_sim's IMDS of one simulated host: what it was asked, its faults, notices the test sets.

    The one IMDS of the agent's tests: the agent as a subprocess, the real ``ImdsClient`` and (on
    a fake clock, ``agent_fakes.imds_on_the_clock``) the supervisor all talk to it over HTTP.
    """

    def __init__(self, sim: FleetSimulator, instance_id: str):
        self.sim = sim
        self.host = sim.host(instance_id)
        self.url = sim.fleet.imds_url(self.host)

    @property
    def instance_id(self) -> str:
        return self.host.instance_id

    @property
    def log(self) -> list[ImdsRequest]:
        with self.sim.fleet.lock:
            return list(self.host.imds_requests)

    def count(self, path: str, status: int | None = None) -> int:
        return sum(
            1 for request in self.log if request.path == path and (status is None or request.status == status)
        )

    def ttls(self) -> list[str | None]:
        return [request.ttl for request in self.log if request.path == TOKEN_PATH]

    def fault(self, kind: str, count: int | None = None, **parameters: Any) -> None:
        """An IMDS fault on this host (``imds_unauthorized``, ``imds_error``, ``imds_delay``);
        ``count=None``: every request."""
        self.sim.inject({"kind": kind, "instance": self.instance_id, "count": count, **parameters})

    def notice(self, *, spot_action: dict | None = None, rebalance: dict | None = None) -> None:
        """Notices served from now on, with no EC2 action to follow (fleet_sim's timed faults
        stop the instance after a spot notice, and date their notices by the real clock)."""
        with self.sim.fleet.lock:
            if spot_action is not None:
                self.host.spot_action = spot_action
            if rebalance is not None:
                self.host.rebalance = rebalance


class SimAws:
    """Clients of the simulator's AWS endpoint, and what the tests read back from it."""

    def __init__(self, sim: FleetSimulator):
        self.sim = sim
        self.url = sim.endpoint_url
        self.ec2 = sim.client("ec2")
        self.s3 = sim.client("s3")

    def instance(self, instance_id: str) -> dict:
        return self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]

    def tags(self, instance_id: str) -> dict:
        return {tag["Key"]: tag["Value"] for tag in self.instance(instance_id).get("Tags", [])}

    def objects(self, bucket: str, prefix: str) -> dict:
        listing = self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return {
            item["Key"]: self.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listing
        }
