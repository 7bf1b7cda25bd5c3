"""Systems Manager as the fleet uses it, with commands that really run on the simulated hosts.

Implemented here (moto has none of it, or only a stub that runs nothing):

- ``DescribeInstanceInformation``: a host registers ``registration_delay`` seconds after its
  instance reaches ``running`` and pings ``Online``; once its instance leaves ``running`` it
  shows ``ConnectionLost``. A host that never registered is not listed.
- ``SendCommand`` (``AWS-RunShellScript``): each instance must be running with its agent
  online, else ``InvalidInstanceId`` for the whole call, as on AWS. After ``delivery_delay`` the
  commands run as one bash script in the host's sandbox, in a session of their own, with the
  host's environment (AWS calls to the simulator, IMDS to the host's fake one).
- ``GetCommandInvocation``, ``ListCommandInvocations``, ``ListCommands``: real statuses
  (``Pending -> InProgress -> Success | Failed | TimedOut | Cancelled``), exit code, output
  (stdout cut at 24,000 characters and stderr at 8,000, as SSM does; plugin ``Output`` at 2,500).
- ``CancelCommand``: ``Cancelling`` at once, ``Cancelled`` once the script's process group died.
- ``executionTimeout`` (default 3600 s) kills the script's process group: ``TimedOut`` /
  ``ExecutionTimedOut`` with response code 137 (128 + SIGKILL, what a shell reports).
  ``TimeoutSeconds`` (delivery, default 3600 s) ends an undelivered one as ``DeliveryTimedOut``.
- ``OutputS3BucketName``/``OutputS3KeyPrefix``: stdout and stderr are written to moto's S3 at
  SSM's key layout, and their URLs reported.

A script killed because its instance stopped ends ``Failed`` with 128 + the signal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moto.backends import get_backend

from fleet_sim.aws_errors import AwsError
from fleet_sim.fleet import Fleet
from fleet_sim.hosts import Host
from fleet_sim.processes import signal_group
from fleet_sim.timeline import iso

OPERATIONS = (
    "SendCommand",
    "ListCommands",
    "ListCommandInvocations",
    "GetCommandInvocation",
    "CancelCommand",
    "DescribeInstanceInformation",
)
DOCUMENTS = ("AWS-RunShellScript",)
PLUGIN_NAME = "aws:runShellScript"
STEP_DIR = "awsrunShellScript/0.awsrunShellScript"
STDOUT_LIMIT = 24000
STDERR_LIMIT = 8000
PLUGIN_OUTPUT_LIMIT = 2500
DEFAULT_EXECUTION_TIMEOUT = 3600
MAX_EXECUTION_TIMEOUT = 172800
DEFAULT_DELIVERY_TIMEOUT = 3600
KILLED_BY_SSM = 128 + signal.SIGKILL
AGENT_VERSION = "3.3.1611.0"

IN_FLIGHT = ("Pending", "InProgress", "Delayed", "Cancelling")


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
    timeout_handle: int | None = None

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
            "OutputS3Region": region,
            "OutputS3BucketName": self.command.output_s3_bucket,
            "OutputS3KeyPrefix": self.command.output_s3_prefix,
        }
        if self.started is not None:
            plugin["ResponseStartDateTime"] = self.started
        if self.ended is not None:
            plugin["ResponseFinishDateTime"] = self.ended
        return plugin

    def to_listing(self, region: str, details: bool) -> dict[str, Any]:
        command = self.command
        entry: dict[str, Any] = {
            "CommandId": command.command_id,
            "InstanceId": self.instance_id,
            "InstanceName": "",
            "Comment": command.comment,
            "DocumentName": command.document_name,
            "DocumentVersion": command.document_version,
            "RequestedDateTime": command.requested,
            "Status": self.status,
            "StatusDetails": self.details,
            "TraceOutput": "",
            "StandardOutputUrl": self.stdout_url,
            "StandardErrorUrl": self.stderr_url,
            "CommandPlugins": [self.to_plugin(region)] if details else [],
            "ServiceRole": "",
            "NotificationConfig": {"NotificationArn": "", "NotificationEvents": [], "NotificationType": ""},
            "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False},
        }
        return entry

    def to_get(self) -> dict[str, Any]:
        command = self.command
        elapsed = ""
        if self.started is not None:
            elapsed = f"PT{((self.ended or time.time()) - self.started):.3f}S"
        return {
            "CommandId": command.command_id,
            "InstanceId": self.instance_id,
            "Comment": command.comment,
            "DocumentName": command.document_name,
            "DocumentVersion": command.document_version,
            "PluginName": PLUGIN_NAME,
            "ResponseCode": self.response_code,
            "ExecutionStartDateTime": iso(self.started) if self.started is not None else "",
            "ExecutionElapsedTime": elapsed,
            "ExecutionEndDateTime": iso(self.ended) if self.ended is not None else "",
            "Status": self.status,
            "StatusDetails": self.details,
            "StandardOutputContent": self.output("stdout")[:STDOUT_LIMIT],
            "StandardOutputUrl": self.stdout_url,
            "StandardErrorContent": self.output("stderr")[:STDERR_LIMIT],
            "StandardErrorUrl": self.stderr_url,
            "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False},
        }


@dataclass
class Command:
    command_id: str
    document_name: str
    document_version: str
    parameters: dict[str, list[str]]
    instance_ids: list[str]
    targets: list[dict[str, Any]]
    comment: str
    requested: float
    delivery_timeout: int
    execution_timeout: int
    output_s3_bucket: str
    output_s3_prefix: str
    max_concurrency: str
    max_errors: str
    invocations: dict[str, Invocation] = field(default_factory=dict)

    @property
    def script(self) -> str:
        return "\n".join(self.parameters.get("commands", [])) + "\n"

    def aggregate(self) -> tuple[str, str]:
        statuses = [invocation.status for invocation in self.invocations.values()]
        if all(status == "Pending" for status in statuses):
            return "Pending", "Pending"
        if any(status in IN_FLIGHT for status in statuses):
            return "InProgress", "InProgress"
        if all(status == "Success" for status in statuses):
            return "Success", "Success"
        if any(status == "Cancelled" for status in statuses):
            return "Cancelled", "Cancelled"
        if any(status == "TimedOut" for status in statuses):
            return "TimedOut", "TimedOut"
        return "Failed", "Failed"

    def to_api(self, region: str) -> dict[str, Any]:
        status, details = self.aggregate()
        invocations = list(self.invocations.values())
        return {
            "CommandId": self.command_id,
            "DocumentName": self.document_name,
            "DocumentVersion": self.document_version,
            "Comment": self.comment,
            "ExpiresAfter": self.requested + self.delivery_timeout + self.execution_timeout,
            "Parameters": self.parameters,
            "InstanceIds": self.instance_ids,
            "Targets": self.targets,
            "RequestedDateTime": self.requested,
            "Status": status,
            "StatusDetails": details,
            "OutputS3Region": region,
            "OutputS3BucketName": self.output_s3_bucket,
            "OutputS3KeyPrefix": self.output_s3_prefix,
            "MaxConcurrency": self.max_concurrency,
            "MaxErrors": self.max_errors,
            "TargetCount": len(invocations),
            "CompletedCount": sum(1 for invocation in invocations if not invocation.in_flight),
            "ErrorCount": sum(1 for invocation in invocations if invocation.status in ("Failed", "TimedOut")),
            "DeliveryTimedOutCount": sum(
                1 for invocation in invocations if invocation.details == "DeliveryTimedOut"
            ),
            "ServiceRole": "",
            "NotificationConfig": {"NotificationArn": "", "NotificationEvents": [], "NotificationType": ""},
            "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False},
            "TimeoutSeconds": self.delivery_timeout,
        }


class SsmService:
    def __init__(self, fleet: Fleet):
        self.fleet = fleet
        self.commands: dict[str, Command] = {}
        self._waiters: list[threading.Thread] = []
        fleet.state_listeners.append(self._on_state_change)

    def handle(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one SSM API call (``request`` is its JSON body); raises :class:`AwsError`."""
        with self.fleet.lock:
            return getattr(self, f"_op_{operation}")(request)

    # -- registration -----------------------------------------------------------------------------

    def _on_state_change(self, host: Host, old: str, new: str) -> None:
        if new == "running":
            delay = self.fleet.faults.registration_delay(
                host.instance_id, host.role, self.fleet.scenario.registration_delay
            )
            self.fleet.scheduler.cancel(host.registration)
            host.registration = self.fleet.scheduler.call_later(delay, lambda: self._register(host))
        elif old == "running":
            self.fleet.scheduler.cancel(host.registration)
            host.registration = None
            if host.ssm_online:
                host.ssm_online = False
                host.last_ping = time.time()
                self.fleet.record("ssm_offline", host)

    def _register(self, host: Host) -> None:
        with self.fleet.lock:
            host.registration = None
            if host.state != "running" or host.ssm_online:
                return
            host.ssm_registered = host.ssm_online = True
            host.registered_at = host.last_ping = time.time()
            self.fleet.record("ssm_online", host)
            for command in self.commands.values():
                invocation = command.invocations.get(host.instance_id)
                if invocation is not None and invocation.status == "Pending":
                    self._deliver(invocation)

    def ping_status(self, host: Host) -> str | None:
        if not host.ssm_registered:
            return None
        return "Online" if host.ssm_online else "ConnectionLost"

    # -- DescribeInstanceInformation --------------------------------------------------------------

    def _op_DescribeInstanceInformation(self, request: dict[str, Any]) -> dict[str, Any]:
        wanted_ids: set[str] | None = None
        wanted_pings: set[str] | None = None
        tag_filters: list[tuple[str, set[str]]] = []
        filters = [
            (item.get("key"), item.get("valueSet") or [])
            for item in request.get("InstanceInformationFilterList") or []
        ]
        filters += [(item.get("Key"), item.get("Values") or []) for item in request.get("Filters") or []]
        for key, values in filters:
            if key == "InstanceIds":
                wanted_ids = set(values) if wanted_ids is None else wanted_ids & set(values)
            elif key == "PingStatus":
                wanted_pings = set(values)
            elif key == "ResourceType" and "EC2Instance" not in values:
                wanted_ids = set()
            elif isinstance(key, str) and key.startswith("tag:"):
                tag_filters.append((key[4:], set(values)))
        entries = []
        for host in self.fleet.hosts.values():
            ping = self.ping_status(host)
            if ping is None or (wanted_ids is not None and host.instance_id not in wanted_ids):
                continue
            if wanted_pings is not None and ping not in wanted_pings:
                continue
            instance = self.fleet.moto_instance(host.instance_id)
            if tag_filters:
                tags = {tag["key"]: tag["value"] for tag in instance.get_tags()}
                if not all(tags.get(key) in values for key, values in tag_filters):
                    continue
            entries.append(
                {
                    "InstanceId": host.instance_id,
                    "PingStatus": ping,
                    "LastPingDateTime": time.time() if host.ssm_online else host.last_ping,
                    "AgentVersion": AGENT_VERSION,
                    "IsLatestVersion": True,
                    "PlatformType": "Linux",
                    "PlatformName": "Amazon Linux",
                    "PlatformVersion": "2023",
                    "ResourceType": "EC2Instance",
                    "IPAddress": instance.private_ip,
                    "ComputerName": instance.private_dns_name,
                    "SourceId": host.instance_id,
                    "SourceType": "AWS::EC2::Instance",
                    "RegistrationDate": host.registered_at,
                }
            )
        page, token = _page(entries, request, default_size=50, minimum=5, maximum=50)
        return {"InstanceInformationList": page, **token}

    # -- SendCommand ------------------------------------------------------------------------------

    def _op_SendCommand(self, request: dict[str, Any]) -> dict[str, Any]:
        document = str(request.get("DocumentName") or "")
        name = document.rsplit("/", 1)[-1]
        if name not in DOCUMENTS:
            raise AwsError("InvalidDocument", f"Document with name {document} does not exist.")
        parameters = {
            key: [str(item) for item in (value if isinstance(value, list) else [value])]
            for key, value in (request.get("Parameters") or {}).items()
        }
        if not parameters.get("commands"):
            raise AwsError("InvalidParameters", 'Parameter "commands" is required.')
        unknown = [
            key for key in parameters if key not in ("commands", "executionTimeout", "workingDirectory")
        ]
        if unknown:
            raise AwsError("InvalidParameters", f"Unknown parameter {unknown[0]!r} for {name}.")
        execution_timeout = _bounded(
            (parameters.get("executionTimeout") or [str(DEFAULT_EXECUTION_TIMEOUT)])[0],
            1,
            MAX_EXECUTION_TIMEOUT,
            "executionTimeout",
        )
        delivery_timeout = _bounded(
            request.get("TimeoutSeconds", DEFAULT_DELIVERY_TIMEOUT), 30, 2592000, "TimeoutSeconds"
        )
        instance_ids = self._targets(request)
        offline = [
            instance_id
            for instance_id in instance_ids
            if instance_id not in self.fleet.hosts
            or not self.fleet.hosts[instance_id].ssm_online
            or self.fleet.hosts[instance_id].state != "running"
        ]
        if offline:
            raise AwsError(
                "InvalidInstanceId",
                f"Instances [[{', '.join(offline)}]] not in a valid state "
                f"for account {self.fleet.account_id}",
            )
        command = Command(
            command_id=str(uuid.uuid4()),
            document_name=document,
            document_version=str(request.get("DocumentVersion") or "$DEFAULT"),
            parameters=parameters,
            instance_ids=list(request.get("InstanceIds") or []),
            targets=list(request.get("Targets") or []),
            comment=str(request.get("Comment") or ""),
            requested=time.time(),
            delivery_timeout=delivery_timeout,
            execution_timeout=execution_timeout,
            output_s3_bucket=str(request.get("OutputS3BucketName") or ""),
            output_s3_prefix=str(request.get("OutputS3KeyPrefix") or ""),
            max_concurrency=str(request.get("MaxConcurrency") or "50"),
            max_errors=str(request.get("MaxErrors") or "0"),
        )
        self.commands[command.command_id] = command
        for instance_id in instance_ids:
            invocation = Invocation(command, instance_id)
            command.invocations[instance_id] = invocation
            host = self.fleet.hosts[instance_id]
            self.fleet.record("command_sent", host, command_id=command.command_id)
            self.fleet.scheduler.call_later(
                self.fleet.scenario.delivery_delay,
                lambda invocation=invocation: self._deliver_locked(invocation),
            )
            self.fleet.scheduler.call_later(
                delivery_timeout, lambda invocation=invocation: self._delivery_timed_out(invocation)
            )
        return {"Command": command.to_api(self.fleet.region)}

    def _targets(self, request: dict[str, Any]) -> list[str]:
        ids = list(dict.fromkeys(request.get("InstanceIds") or []))
        targets = request.get("Targets") or []
        if ids and targets:
            raise AwsError("InvalidParameters", "Specify either InstanceIds or Targets, not both.")
        for target in targets:
            key, values = target.get("Key", ""), set(target.get("Values") or [])
            if key == "InstanceIds":
                ids.extend(value for value in target.get("Values") or [] if value not in ids)
            elif key.startswith("tag:"):
                for host in self.fleet.hosts.values():
                    tags = {
                        t["key"]: t["value"] for t in self.fleet.moto_instance(host.instance_id).get_tags()
                    }
                    if tags.get(key[4:]) in values and host.instance_id not in ids:
                        ids.append(host.instance_id)
            else:
                raise AwsError("InvalidTarget", f"Target key {key!r} is not supported by the simulator.")
        if not ids:
            raise AwsError(
                "InvalidParameters", "SendCommand needs InstanceIds or Targets that match instances."
            )
        if len(ids) > 50:
            raise AwsError("ValidationException", "InstanceIds: at most 50 instances per command.")
        return ids

    def _deliver_locked(self, invocation: Invocation) -> None:
        with self.fleet.lock:
            self._deliver(invocation)

    def _deliver(self, invocation: Invocation) -> None:
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
                close_fds=True,
            )
        invocation.status = invocation.details = "InProgress"
        self.fleet.record("command_started", host, command_id=command.command_id, pid=invocation.popen.pid)
        invocation.timeout_handle = self.fleet.scheduler.call_later(
            command.execution_timeout, lambda: self._execution_timed_out(invocation)
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
        with self.fleet.lock:
            if invocation.status != "InProgress" or invocation.popen is None:
                return
            invocation.timed_out = True
            signal_group(invocation.popen.pid, signal.SIGKILL)

    def _delivery_timed_out(self, invocation: Invocation) -> None:
        with self.fleet.lock:
            if invocation.status == "Pending":
                self._ended(invocation, "TimedOut", "DeliveryTimedOut", -1)

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
        command = invocation.command
        if not command.output_s3_bucket or invocation.directory is None:
            return
        s3 = get_backend("s3")[self.fleet.account_id]["aws"]
        for stream in ("stdout", "stderr"):
            key = "/".join(
                part
                for part in (
                    command.output_s3_prefix.strip("/"),
                    command.command_id,
                    invocation.instance_id,
                    STEP_DIR,
                    stream,
                )
                if part
            )
            try:
                s3.put_object(command.output_s3_bucket, key, (invocation.directory / stream).read_bytes())
            except Exception as error:  # no such bucket: SSM reports no URL, the command's result stands
                self.fleet.record(
                    "output_upload_failed",
                    self.fleet.hosts.get(invocation.instance_id),
                    command_id=command.command_id,
                    error=str(error),
                )
                return
            url = f"https://s3.{self.fleet.region}.amazonaws.com/{command.output_s3_bucket}/{key}"
            setattr(invocation, f"{stream}_url", url)

    # -- reading ----------------------------------------------------------------------------------

    def _op_GetCommandInvocation(self, request: dict[str, Any]) -> dict[str, Any]:
        command = self.commands.get(str(request.get("CommandId") or ""))
        invocation = command.invocations.get(str(request.get("InstanceId") or "")) if command else None
        plugin = request.get("PluginName")
        if invocation is None or (plugin and plugin not in (PLUGIN_NAME, "runShellScript")):
            raise AwsError("InvocationDoesNotExist", "An error occurred (InvocationDoesNotExist)")
        return invocation.to_get()

    def _op_ListCommandInvocations(self, request: dict[str, Any]) -> dict[str, Any]:
        command_id, instance_id = request.get("CommandId"), request.get("InstanceId")
        if command_id and command_id not in self.commands:
            raise AwsError("InvalidCommandId", f"Command {command_id} does not exist.")
        invocations = [
            invocation
            for command in self._newest_first(command_id)
            for invocation in command.invocations.values()
            if not instance_id or invocation.instance_id == instance_id
        ]
        details = bool(request.get("Details"))
        entries = [invocation.to_listing(self.fleet.region, details) for invocation in invocations]
        page, token = _page(entries, request, default_size=50, minimum=1, maximum=50)
        return {"CommandInvocations": page, **token}

    def _op_ListCommands(self, request: dict[str, Any]) -> dict[str, Any]:
        command_id, instance_id = request.get("CommandId"), request.get("InstanceId")
        if command_id and command_id not in self.commands:
            raise AwsError("InvalidCommandId", f"Command {command_id} does not exist.")
        entries = [
            command.to_api(self.fleet.region)
            for command in self._newest_first(command_id)
            if not instance_id or instance_id in command.invocations
        ]
        page, token = _page(entries, request, default_size=50, minimum=1, maximum=50)
        return {"Commands": page, **token}

    def _newest_first(self, command_id: str | None) -> list[Command]:
        if command_id:
            return [self.commands[command_id]]
        return sorted(self.commands.values(), key=lambda command: command.requested, reverse=True)

    # -- CancelCommand ----------------------------------------------------------------------------

    def _op_CancelCommand(self, request: dict[str, Any]) -> dict[str, Any]:
        command = self.commands.get(str(request.get("CommandId") or ""))
        if command is None:
            raise AwsError("InvalidCommandId", f"Command {request.get('CommandId')} does not exist.")
        wanted = request.get("InstanceIds") or list(command.invocations)
        unknown = [instance_id for instance_id in wanted if instance_id not in command.invocations]
        if unknown:
            raise AwsError(
                "InvalidInstanceId", f"Instances [[{', '.join(unknown)}]] are not part of the command."
            )
        for instance_id in wanted:
            self.cancel(command.invocations[instance_id])
        return {}

    def cancel(self, invocation: Invocation) -> None:
        if invocation.status == "Pending":
            self._ended(invocation, "Cancelled", "Cancelled", -1)
        elif invocation.status == "InProgress" and invocation.popen is not None:
            invocation.cancel_requested = True
            invocation.status = invocation.details = "Cancelling"
            signal_group(invocation.popen.pid, signal.SIGKILL)

    # -- shutdown ---------------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Kill every script still running and wait for their waiters."""
        with self.fleet.lock:
            for command in self.commands.values():
                for invocation in command.invocations.values():
                    if invocation.popen is not None and invocation.popen.poll() is None:
                        signal_group(invocation.popen.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        for waiter in self._waiters:
            waiter.join(max(0.0, deadline - time.monotonic()))


def _bounded(value: Any, low: int, high: int, name: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise AwsError(
            "InvalidParameters", f"{name} must be a whole number of seconds, got {value!r}."
        ) from None
    if not low <= number <= high:
        raise AwsError("InvalidParameters", f"{name} must be between {low} and {high}, got {number}.")
    return number


def _page(
    entries: list[dict[str, Any]], request: dict[str, Any], *, default_size: int, minimum: int, maximum: int
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    size = request.get("MaxResults", default_size)
    if not isinstance(size, int) or not minimum <= size <= maximum:
        raise AwsError(
            "ValidationException",
            f"1 validation error detected: Value '{size}' at 'maxResults' failed to satisfy constraint: "
            f"Member must have value between {minimum} and {maximum}",
        )
    start = 0
    if request.get("NextToken"):
        with contextlib.suppress(ValueError):
            start = int(request["NextToken"])
    page = entries[start : start + size]
    return page, ({"NextToken": str(start + size)} if start + size < len(entries) else {})
