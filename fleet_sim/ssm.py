"""Systems Manager as the fleet uses it (moto has none of this, or a stub that runs nothing): the
hosts' agents registering (``Online`` a delay after ``running``, then ``ConnectionLost``) and the API
calls, answered and run by :mod:`fleet_sim.ssm_commands`."""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

from fleet_sim.aws_errors import AwsError
from fleet_sim.fleet import Fleet
from fleet_sim.hosts import Host
from fleet_sim.ssm_commands import PLUGIN_NAME, Command, Invocation, ScriptRunner

DOCUMENTS = ("AWS-RunShellScript",)
PARAMETERS = ("commands", "executionTimeout", "workingDirectory")
DEFAULT_EXECUTION_TIMEOUT = 3600
MAX_EXECUTION_TIMEOUT = 172800
DEFAULT_DELIVERY_TIMEOUT = 3600
MAX_DELIVERY_TIMEOUT = 2592000
AGENT_VERSION = "3.3.1611.0"
# SendCommand's fields that SSM echoes back, with their defaults.
ECHOED = {
    "DocumentVersion": "$DEFAULT",
    "Comment": "",
    "OutputS3BucketName": "",
    "OutputS3KeyPrefix": "",
    "MaxConcurrency": "50",
    "MaxErrors": "0",
}


class SsmService:
    def __init__(self, fleet: Fleet):
        self.fleet = fleet
        self.commands: dict[str, Command] = {}
        self.runner = ScriptRunner(fleet)
        fleet.state_listeners.append(self._on_state_change)

    def handle(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one SSM API call (``request`` is its JSON body); raises :class:`AwsError`."""
        with self.fleet.lock:
            return getattr(self, f"_op_{operation}")(request)

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
                    self.runner.deliver(invocation)

    def _op_DescribeInstanceInformation(self, request: dict[str, Any]) -> dict[str, Any]:
        return _paged("InstanceInformationList", self._instance_information(request), request, minimum=5)

    def _instance_information(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        """DescribeInstanceInformation's entries for the request's filters (not paged)."""
        filters = [
            (item.get("key"), item.get("valueSet") or [])
            for item in request.get("InstanceInformationFilterList") or []
        ]
        filters += [(item.get("Key"), item.get("Values") or []) for item in request.get("Filters") or []]
        entries = []
        for host in self.fleet.hosts.values():
            ping = ping_status(host)
            facts = {"InstanceIds": host.instance_id, "PingStatus": ping, "ResourceType": "EC2Instance"}
            facts.update({f"tag:{key}": value for key, value in self.fleet.tags(host.instance_id).items()})
            # Every filter holds (a tag filter on a missing tag does not); unknown keys filter nothing.
            known = [(key, values) for key, values in filters if key in facts or str(key).startswith("tag:")]
            if ping is None or not all(facts.get(key) in values for key, values in known):
                continue
            instance = self.fleet.moto_instance(host.instance_id)
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
        return entries

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
        unknown = [key for key in parameters if key not in PARAMETERS]
        if unknown:
            raise AwsError("InvalidParameters", f"Unknown parameter {unknown[0]!r} for {name}.")
        execution = (parameters.get("executionTimeout") or [DEFAULT_EXECUTION_TIMEOUT])[0]
        execution_timeout = _bounded(execution, 1, MAX_EXECUTION_TIMEOUT, "executionTimeout")
        delivery = request.get("TimeoutSeconds", DEFAULT_DELIVERY_TIMEOUT)
        delivery_timeout = _bounded(delivery, 30, MAX_DELIVERY_TIMEOUT, "TimeoutSeconds")
        instance_ids = self._targets(request)
        hosts = self.fleet.hosts
        offline = [
            instance_id
            for instance_id in instance_ids
            if (host := hosts.get(instance_id)) is None or not host.ssm_online or host.state != "running"
        ]
        if offline:
            raise AwsError(
                "InvalidInstanceId",
                f"Instances [[{', '.join(offline)}]] not in a valid state "
                f"for account {self.fleet.account_id}",
            )
        echo = {
            "DocumentName": document,
            "Parameters": parameters,
            "InstanceIds": list(request.get("InstanceIds") or []),
            "Targets": list(request.get("Targets") or []),
            **{key: str(request.get(key) or default) for key, default in ECHOED.items()},
        }
        command = Command(str(uuid.uuid4()), echo, time.time(), delivery_timeout, execution_timeout)
        self.commands[command.command_id] = command
        for instance_id in instance_ids:
            invocation = command.invocations[instance_id] = Invocation(command, instance_id)
            self.fleet.record("command_sent", hosts[instance_id], command_id=command.command_id)
            self.runner.schedule(invocation)
        return {"Command": command.to_api(self.fleet.region)}

    def _targets(self, request: dict[str, Any]) -> list[str]:
        ids = list(dict.fromkeys(request.get("InstanceIds") or []))
        targets = request.get("Targets") or []
        if ids and targets:
            raise AwsError("InvalidParameters", "Specify either InstanceIds or Targets, not both.")
        for target in targets:
            key, values = target.get("Key", ""), target.get("Values") or []
            if key == "InstanceIds":
                found = values
            elif key.startswith("tag:"):
                found = [i for i in self.fleet.hosts if self.fleet.tags(i).get(key[4:]) in set(values)]
            else:
                raise AwsError("InvalidTarget", f"Target key {key!r} is not supported by the simulator.")
            ids.extend(instance_id for instance_id in found if instance_id not in ids)
        if not ids:
            raise AwsError(
                "InvalidParameters", "SendCommand needs InstanceIds or Targets that match instances."
            )
        if len(ids) > 50:
            raise AwsError("ValidationException", "InstanceIds: at most 50 instances per command.")
        return ids

    def _op_GetCommandInvocation(self, request: dict[str, Any]) -> dict[str, Any]:
        command = self.commands.get(str(request.get("CommandId") or ""))
        invocation = command.invocations.get(str(request.get("InstanceId") or "")) if command else None
        plugin = request.get("PluginName")
        if invocation is None or (plugin and plugin not in (PLUGIN_NAME, "runShellScript")):
            raise AwsError("InvocationDoesNotExist", "An error occurred (InvocationDoesNotExist)")
        return invocation.to_get()

    def _op_ListCommandInvocations(self, request: dict[str, Any]) -> dict[str, Any]:
        instance_id, details = request.get("InstanceId"), bool(request.get("Details"))
        entries = [
            invocation.to_listing(self.fleet.region, details)
            for command in self._newest_first(request.get("CommandId"))
            for invocation in command.invocations.values()
            if not instance_id or invocation.instance_id == instance_id
        ]
        return _paged("CommandInvocations", entries, request)

    def _op_ListCommands(self, request: dict[str, Any]) -> dict[str, Any]:
        instance_id = request.get("InstanceId")
        entries = [
            command.to_api(self.fleet.region)
            for command in self._newest_first(request.get("CommandId"))
            if not instance_id or instance_id in command.invocations
        ]
        return _paged("Commands", entries, request)

    def _newest_first(self, command_id: str | None) -> list[Command]:
        if command_id and command_id not in self.commands:
            raise AwsError("InvalidCommandId", f"Command {command_id} does not exist.")
        if command_id:
            return [self.commands[command_id]]
        return sorted(self.commands.values(), key=lambda command: command.requested, reverse=True)

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
            self.runner.cancel(command.invocations[instance_id])
        return {}

    def close(self, timeout: float = 5.0) -> None:
        """Kill every script still running and wait for their waiters."""
        with self.fleet.lock:
            invocations = [i for command in self.commands.values() for i in command.invocations.values()]
        self.runner.close(invocations, timeout)


def ping_status(host: Host) -> str | None:
    """``Online``, ``ConnectionLost``, or ``None`` for a host that never registered."""
    if not host.ssm_registered:
        return None
    return "Online" if host.ssm_online else "ConnectionLost"


# The SSM operations answered here; the front sends every other one to moto.
OPERATIONS = tuple(name[4:] for name in dir(SsmService) if name.startswith("_op_"))


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


def _paged(
    key: str, entries: list[dict[str, Any]], request: dict[str, Any], minimum: int = 1
) -> dict[str, Any]:
    """``{key: one page of entries}``, with a ``NextToken`` (an offset) if more follow."""
    size, maximum = request.get("MaxResults", 50), 50
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
    more = {"NextToken": str(start + size)} if start + size < len(entries) else {}
    return {key: entries[start : start + size], **more}
