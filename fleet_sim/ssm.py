"""Systems Manager as the fleet uses it (moto has none of this, or a stub that runs nothing):
the API calls, answered from :mod:`fleet_sim.ssm_commands`, run by :mod:`fleet_sim.ssm_runs` on
hosts whose agents :mod:`fleet_sim.ssm_agents` registers. What each call does: fleet_sim/README.md."""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

from fleet_sim.aws_errors import AwsError
from fleet_sim.fleet import Fleet
from fleet_sim.hosts import Host
from fleet_sim.ssm_agents import SsmAgents
from fleet_sim.ssm_commands import PLUGIN_NAME, Command, Invocation
from fleet_sim.ssm_runs import ScriptRunner

DOCUMENTS = ("AWS-RunShellScript",)
PARAMETERS = ("commands", "executionTimeout", "workingDirectory")
DEFAULT_EXECUTION_TIMEOUT = 3600
MAX_EXECUTION_TIMEOUT = 172800
DEFAULT_DELIVERY_TIMEOUT = 3600
MAX_DELIVERY_TIMEOUT = 2592000


class SsmService:
    def __init__(self, fleet: Fleet):
        self.fleet = fleet
        self.commands: dict[str, Command] = {}
        self.runner = ScriptRunner(fleet)
        self.agents = SsmAgents(fleet, on_online=self._deliver_pending)

    def handle(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one SSM API call (``request`` is its JSON body); raises :class:`AwsError`."""
        with self.fleet.lock:
            return getattr(self, f"_op_{operation}")(request)

    def _deliver_pending(self, host: Host) -> None:
        for command in self.commands.values():
            invocation = command.invocations.get(host.instance_id)
            if invocation is not None and invocation.status == "Pending":
                self.runner.deliver(invocation)

    def _op_DescribeInstanceInformation(self, request: dict[str, Any]) -> dict[str, Any]:
        return _paged(
            "InstanceInformationList", self.agents.instance_information(request), request, minimum=5
        )

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
            if instance_id not in hosts
            or not hosts[instance_id].ssm_online
            or hosts[instance_id].state != "running"
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
