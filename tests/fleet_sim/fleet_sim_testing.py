"""Helpers for the simulator's tests: booting a host, running commands on it, reading its timeline,
serving the simulator as a process."""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

from fleet_testing import wait_for

from fleet_sim.ssm_commands import IN_FLIGHT

REPO = Path(__file__).resolve().parents[2]


def described(ec2: Any, instance_id: str) -> dict[str, Any]:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def ping_status(ssm: Any, instance_id: str) -> str | None:
    listing = ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": [instance_id]}])
    found = [info["PingStatus"] for info in listing["InstanceInformationList"]]
    return found[0] if found else None


def running(sim: Any, role: str = "tasks") -> str:
    """Start the role's instance and wait until it is running; returns its ID."""
    instance_id = sim.instance_for(role)
    sim.client("ec2").start_instances(InstanceIds=[instance_id])
    sim.wait_for_state(instance_id, "running")
    return instance_id


def boot(sim: Any, role: str = "tasks") -> str:
    """Start the role's instance and wait until its SSM agent is online; returns its ID."""
    instance_id = running(sim, role)
    wait_for(lambda: ping_status(sim.client("ssm"), instance_id) == "Online", what=f"{instance_id} online")
    return instance_id


def send(ssm: Any, instance_id: str, *commands: str, **parameters: str) -> str:
    response = ssm.send_command(
        InstanceIds=[instance_id],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": list(commands), **{key: [value] for key, value in parameters.items()}},
    )
    return response["Command"]["CommandId"]


def invocation_status(ssm: Any, command_id: str, instance_id: str) -> str:
    listing = ssm.list_command_invocations(CommandId=command_id, InstanceId=instance_id)
    return listing["CommandInvocations"][0]["Status"]


def wait_ended(ssm: Any, command_id: str, instance_id: str, timeout: float = 15.0) -> dict[str, Any]:
    """Poll ListCommandInvocations until the pair ended; returns GetCommandInvocation's answer."""
    seen: list[str] = []

    def ended() -> bool:
        status = invocation_status(ssm, command_id, instance_id)
        if not seen or seen[-1] != status:
            seen.append(status)
        return status not in IN_FLIGHT

    wait_for(ended, timeout=timeout, what=f"command {command_id} on {instance_id}")
    invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    invocation["seen"] = seen
    return invocation


def events(sim: Any, instance_id: str, event: str, **match: Any) -> list[dict[str, Any]]:
    return [
        entry
        for entry in sim.timeline(instance_id, event)
        if all(entry.get(key) == value for key, value in match.items())
    ]


def read_line(process: subprocess.Popen, timeout: float = 60.0) -> str:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, "the simulator printed nothing"
    return process.stdout.readline()


@contextlib.contextmanager
def serving(tmp_path: Path, *options: str) -> Generator[tuple[subprocess.Popen, dict[str, Any]]]:
    """``python -m fleet_sim serve --workdir <tmp_path>/work *options`` run in ``tmp_path``.

    Yields the process and the JSON line it printed once ready; kills it if it still runs at the end.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "fleet_sim", "serve", "--workdir", str(tmp_path / "work"), *options],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        yield process, json.loads(read_line(process))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
