"""SSM commands and their invocations (one per instance), as SSM's API shows them."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet_sim.timeline import iso

PLUGIN_NAME = "aws:runShellScript"
STDOUT_LIMIT = 24000
STDERR_LIMIT = 8000
PLUGIN_OUTPUT_LIMIT = 2500
KILLED_BY_SSM = 128 + signal.SIGKILL
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
        if self.directory is None:
            return ""
        try:
            return (self.directory / stream).read_bytes().decode("utf-8", errors="replace")
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
