"""SSM commands and their invocations (one per instance), as SSM's API shows them, and how they run
on their hosts: delivery, the script's process, timeouts, cancelling, S3 output. Every method of
:class:`ScriptRunner` but its waiter threads runs under the fleet's lock."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moto.backends import get_backend

from fleet_sim.fleet import Fleet
from fleet_sim.processes import signal_group
from fleet_sim.timeline import iso

PLUGIN_NAME = "aws:runShellScript"
STDOUT_LIMIT = 24000
STDERR_LIMIT = 8000
PLUGIN_OUTPUT_LIMIT = 2500
KILLED_BY_SSM = 128 + signal.SIGKILL
STEP_DIR = "awsrunShellScript/0.awsrunShellScript"
IN_FLIGHT = ("Pending", "InProgress", "Delayed", "Cancelling")
_NO_NOTIFICATIONS = {"NotificationArn": "", "NotificationEvents": [], "NotificationType": ""}
_NO_CLOUDWATCH = {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False}


@dataclass
class Invocation:
    command: Command
    instance_id: str
    status: str = "Pending"
    details: str = "Pending"
    response_code: int = -1
    started: float | None = None
    ended: float | None = None
    directory: Path | None = None
    popen: subprocess.Popen | None = None
    cancel_requested: bool = False
    timed_out: bool = False
    stdout_url: str = ""
    stderr_url: str = ""
    timeout_handle: Any = None

    @property
    def in_flight(self) -> bool:
        return self.status in IN_FLIGHT

    def output(self, stream: str) -> str:
        try:
            return (self.directory / stream).read_text("utf-8", errors="replace") if self.directory else ""
        except OSError:
            return ""

    def _common(self) -> dict[str, Any]:
        return {
            "CommandId": self.command.command_id,
            "InstanceId": self.instance_id,
            **{key: self.command.request[key] for key in ("Comment", "DocumentName", "DocumentVersion")},
            "Status": self.status,
            "StatusDetails": self.details,
            "StandardOutputUrl": self.stdout_url,
            "StandardErrorUrl": self.stderr_url,
            "CloudWatchOutputConfig": _NO_CLOUDWATCH,
        }

    def to_plugin(self, region: str) -> dict[str, Any]:
        stdout, stderr = self.output("stdout"), self.output("stderr")
        output = stdout + (f"\n----------ERROR-------\n{stderr}" if stderr else "")
        plugin: dict[str, Any] = {
            "Name": PLUGIN_NAME,
            "Status": self.status,
            "StatusDetails": self.details,
            "ResponseCode": self.response_code,
            "Output": output[:PLUGIN_OUTPUT_LIMIT],
            "StandardOutputUrl": self.stdout_url,
            "StandardErrorUrl": self.stderr_url,
            **self.command.s3_output(region),
        }
        times = {"ResponseStartDateTime": self.started, "ResponseFinishDateTime": self.ended}
        return {**plugin, **{key: value for key, value in times.items() if value is not None}}

    def to_listing(self, region: str, details: bool) -> dict[str, Any]:
        """An entry of ListCommandInvocations."""
        return {
            **self._common(),
            "InstanceName": "",
            "RequestedDateTime": self.command.requested,
            "TraceOutput": "",
            "CommandPlugins": [self.to_plugin(region)] if details else [],
            "ServiceRole": "",
            "NotificationConfig": _NO_NOTIFICATIONS,
        }

    def to_get(self) -> dict[str, Any]:
        """GetCommandInvocation's answer."""
        elapsed = f"PT{((self.ended or time.time()) - self.started):.3f}S" if self.started is not None else ""
        return {
            **self._common(),
            "PluginName": PLUGIN_NAME,
            "ResponseCode": self.response_code,
            "ExecutionStartDateTime": iso(self.started) if self.started is not None else "",
            "ExecutionElapsedTime": elapsed,
            "ExecutionEndDateTime": iso(self.ended) if self.ended is not None else "",
            "StandardOutputContent": self.output("stdout")[:STDOUT_LIMIT],
            "StandardErrorContent": self.output("stderr")[:STDERR_LIMIT],
        }


@dataclass
class Command:
    command_id: str
    # What SendCommand was asked, as SSM echoes it back: DocumentName, Parameters, Comment, ...
    request: dict[str, Any]
    requested: float
    delivery_timeout: int
    execution_timeout: int
    invocations: dict[str, Invocation] = field(default_factory=dict)

    @property
    def parameters(self) -> dict[str, list[str]]:
        return self.request["Parameters"]

    @property
    def script(self) -> str:
        return "\n".join(self.parameters.get("commands", [])) + "\n"

    def status(self) -> str:
        """The command's status (also its details) from its invocations'."""
        statuses = [invocation.status for invocation in self.invocations.values()]
        if all(status == "Pending" for status in statuses):
            return "Pending"
        if any(status in IN_FLIGHT for status in statuses):
            return "InProgress"
        if all(status == "Success" for status in statuses):
            return "Success"
        return next((status for status in ("Cancelled", "TimedOut") if status in statuses), "Failed")

    def s3_output(self, region: str) -> dict[str, str]:
        keys = ("OutputS3BucketName", "OutputS3KeyPrefix")
        return {"OutputS3Region": region, **{key: self.request[key] for key in keys}}

    def to_api(self, region: str) -> dict[str, Any]:
        """The command as SendCommand and ListCommands answer it."""
        status, invocations = self.status(), list(self.invocations.values())
        return {
            "CommandId": self.command_id,
            **self.request,
            "ExpiresAfter": self.requested + self.delivery_timeout + self.execution_timeout,
            "RequestedDateTime": self.requested,
            "Status": status,
            "StatusDetails": status,
            "OutputS3Region": region,
            "TargetCount": len(invocations),
            "CompletedCount": sum(not invocation.in_flight for invocation in invocations),
            "ErrorCount": sum(invocation.status in ("Failed", "TimedOut") for invocation in invocations),
            "DeliveryTimedOutCount": sum(
                invocation.details == "DeliveryTimedOut" for invocation in invocations
            ),
            "ServiceRole": "",
            "NotificationConfig": _NO_NOTIFICATIONS,
            "CloudWatchOutputConfig": _NO_CLOUDWATCH,
            "TimeoutSeconds": self.delivery_timeout,
        }


class ScriptRunner:
    def __init__(self, fleet: Fleet):
        self.fleet = fleet
        self._waiters: list[threading.Thread] = []

    def schedule(self, invocation: Invocation) -> None:
        """Deliver a new invocation after the scenario's delay, or time it out undelivered."""
        self.fleet.scheduler.call_later(
            self.fleet.scenario.delivery_delay, lambda: self._locked(self.deliver, invocation)
        )
        self.fleet.scheduler.call_later(
            invocation.command.delivery_timeout, lambda: self._locked(self._delivery_timed_out, invocation)
        )

    def _locked(self, method: Callable[[Invocation], None], invocation: Invocation) -> None:
        with self.fleet.lock:
            method(invocation)

    def deliver(self, invocation: Invocation) -> None:
        host = self.fleet.hosts[invocation.instance_id]
        if invocation.status != "Pending" or not host.ssm_online or host.state != "running":
            return  # cancelled, or the host is down: delivered when it is back online
        command = invocation.command
        directory = self.fleet.workdir / "ssm" / command.command_id / invocation.instance_id
        directory.mkdir(parents=True, exist_ok=True)
        script = directory / "_script.sh"
        script.write_text(command.script)
        invocation.directory = directory
        working_directory = (command.parameters.get("workingDirectory") or [""])[0] or str(host.sandbox)
        invocation.started = time.time()
        if not os.path.isdir(working_directory):
            (directory / "stdout").write_text("")
            (directory / "stderr").write_text(
                f"Failed to run commands: directory {working_directory} not found\n"
            )
            self._ended(invocation, "Failed", "Failed", 1)
            return
        with open(directory / "stdout", "wb") as stdout, open(directory / "stderr", "wb") as stderr:
            invocation.popen = subprocess.Popen(
                ["/bin/bash", str(script)],
                cwd=working_directory,
                env=self.fleet.environment(host),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        invocation.status = invocation.details = "InProgress"
        self.fleet.record("command_started", host, command_id=command.command_id, pid=invocation.popen.pid)
        invocation.timeout_handle = self.fleet.scheduler.call_later(
            command.execution_timeout, lambda: self._locked(self._execution_timed_out, invocation)
        )
        waiter = threading.Thread(
            target=self._wait, args=(invocation,), name=f"ssm-{command.command_id[:8]}", daemon=True
        )
        self._waiters.append(waiter)
        waiter.start()
        self.fleet.command_started(host, command.command_id)

    def _wait(self, invocation: Invocation) -> None:
        assert invocation.popen is not None
        code = invocation.popen.wait()
        with self.fleet.lock:
            self.fleet.scheduler.cancel(invocation.timeout_handle)
            if invocation.cancel_requested:
                self._ended(invocation, "Cancelled", "Cancelled", -1)
            elif invocation.timed_out:
                self._ended(invocation, "TimedOut", "ExecutionTimedOut", KILLED_BY_SSM)
            elif code == 0:
                self._ended(invocation, "Success", "Success", 0)
            else:
                self._ended(invocation, "Failed", "Failed", code if code > 0 else 128 - code)

    def _execution_timed_out(self, invocation: Invocation) -> None:
        if invocation.status == "InProgress" and invocation.popen is not None:
            invocation.timed_out = True
            signal_group(invocation.popen.pid, signal.SIGKILL)

    def _delivery_timed_out(self, invocation: Invocation) -> None:
        if invocation.status == "Pending":
            self._ended(invocation, "TimedOut", "DeliveryTimedOut", -1)

    def cancel(self, invocation: Invocation) -> None:
        if invocation.status == "Pending":
            self._ended(invocation, "Cancelled", "Cancelled", -1)
        elif invocation.status == "InProgress" and invocation.popen is not None:
            invocation.cancel_requested = True
            invocation.status = invocation.details = "Cancelling"
            signal_group(invocation.popen.pid, signal.SIGKILL)

    def _ended(self, invocation: Invocation, status: str, details: str, code: int) -> None:
        invocation.status, invocation.details, invocation.response_code = status, details, code
        invocation.ended = time.time()
        self._upload(invocation)
        self.fleet.record(
            "command_ended",
            self.fleet.hosts.get(invocation.instance_id),
            command_id=invocation.command.command_id,
            status=status,
            status_details=details,
            response_code=code,
        )

    def _upload(self, invocation: Invocation) -> None:
        """stdout and stderr to moto's S3 at SSM's key layout; no bucket: no URL, the result stands."""
        command = invocation.command
        bucket, prefix = command.request["OutputS3BucketName"], command.request["OutputS3KeyPrefix"]
        if not bucket or invocation.directory is None:
            return
        s3 = get_backend("s3")[self.fleet.account_id]["aws"]
        for stream in ("stdout", "stderr"):
            path = [prefix.strip("/"), command.command_id, invocation.instance_id, STEP_DIR, stream]
            key = "/".join(filter(None, path))
            try:
                s3.put_object(bucket, key, (invocation.directory / stream).read_bytes())
            except Exception as error:
                self.fleet.record(
                    "output_upload_failed",
                    self.fleet.hosts.get(invocation.instance_id),
                    command_id=command.command_id,
                    error=str(error),
                )
                return
            url = f"https://s3.{self.fleet.region}.amazonaws.com/{bucket}/{key}"
            setattr(invocation, f"{stream}_url", url)

    def close(self, invocations: list[Invocation], timeout: float = 5.0) -> None:
        """Kill every script still running and wait for their waiters."""
        with self.fleet.lock:
            for invocation in invocations:
                if invocation.popen is not None and invocation.popen.poll() is None:
                    signal_group(invocation.popen.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        for waiter in self._waiters:
            waiter.join(max(0.0, deadline - time.monotonic()))
