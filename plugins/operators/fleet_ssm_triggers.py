"""Triggers that wait on AWS Systems Manager: agents coming online, and Run Command invocations.

Run Command is tracked pair by pair: a (command, instance) pair not listed yet is pending. The
provider's ``SsmRunCommandTrigger`` waits on whatever an early listing returns, which right
after ``SendCommand`` can be nothing, and then reports success before the command ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.amazon.aws.hooks.ssm import SsmHook
from botocore.exceptions import ClientError

from operators import fleet_ssm as ssm
from operators.fleet_aws import error_code, error_message, some
from operators.fleet_wait import FAILED, SUCCESS, FleetPollTrigger


class FleetSsmAgentOnlineTrigger(FleetPollTrigger):
    """Wait until the SSM agent of every instance of a list pings ``Online``.

    ``ConnectionLost`` (as until a restarted instance has booted) and ``Inactive`` are waited
    out, not failed: the wait is bounded and its timeout names each instance and status.
    """

    hook_class = SsmHook
    serialized_fields = ("instance_ids",)

    def __init__(self, *, instance_ids: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.instance_ids = list(instance_ids)
        self._not_online: dict[str, str] = dict.fromkeys(self.instance_ids, ssm.NOT_REGISTERED)

    def timeout_message(self) -> str:
        return (
            f"SSM agent not online within {self.waiter_max_attempts} polls every {self.waiter_delay} s "
            f"on: {self.describe_not_online()}"
        )

    def describe_not_online(self) -> str:
        return some([f"{instance_id} ({status})" for instance_id, status in self._not_online.items()])

    def poll_once(self) -> dict[str, Any] | None:
        agents = ssm.describe_agents(self.hook.conn, self.instance_ids)
        self._not_online = {
            instance_id: agents.get(instance_id, {}).get("PingStatus", ssm.NOT_REGISTERED)
            for instance_id in self.instance_ids
            if agents.get(instance_id, {}).get("PingStatus") != ssm.PING_ONLINE
        }
        if self._not_online:
            self.log.info(
                "SSM agent not online yet on %d of %d instance(s): %s",
                len(self._not_online),
                len(self.instance_ids),
                self.describe_not_online(),
            )
            return None
        return {
            "status": SUCCESS,
            "message": f"SSM agent online on {len(self.instance_ids)} instance(s)",
            "instances": {
                instance_id: {
                    "ping_status": agents[instance_id].get("PingStatus"),
                    "agent_version": agents[instance_id].get("AgentVersion"),
                    "platform_name": agents[instance_id].get("PlatformName"),
                }
                for instance_id in self.instance_ids
            },
        }


class FleetRunCommandTrigger(FleetPollTrigger):
    """Wait until every (command, instance) pair a Run Command was sent to has ended.

    Each poll lists the invocations of the commands not ended yet; once every pair has ended
    (even after one failed: the others run on either way), one ``GetCommandInvocation`` per pair
    reads its exit code, times and output tails into the event's ``results``.

    :param command_instances: each command ID with the instance IDs it was sent to
    :param log_tail_lines: how many last lines of stdout and stderr to keep per instance
    """

    hook_class = SsmHook
    serialized_fields = ("command_instances", "log_tail_lines")

    def __init__(
        self,
        *,
        command_instances: Mapping[str, Sequence[str]],
        log_tail_lines: int = 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.command_instances = {
            command_id: list(instance_ids) for command_id, instance_ids in command_instances.items()
        }
        if not self.command_instances or not all(self.command_instances.values()):
            raise ValueError(
                f"command_instances needs at least one command with instances, got {command_instances!r}"
            )
        self.log_tail_lines = log_tail_lines
        # Ended pairs, which can never change again: their commands need no more listing.
        self._ended: dict[tuple[str, str], tuple[str, str | None]] = {}
        self._waiting: list[str] = [
            f"{instance_id} (Pending, {ssm.NOT_LISTED})" for _, instance_id in self.pairs
        ]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [
            (command_id, instance_id)
            for command_id, instance_ids in self.command_instances.items()
            for instance_id in instance_ids
        ]

    @property
    def command_ids(self) -> list[str]:
        return list(self.command_instances)

    def timeout_message(self) -> str:
        message = (
            f"Run Command {', '.join(self.command_ids)} not finished within {self.waiter_max_attempts} "
            f"polls every {self.waiter_delay} s; still waiting on {some(self._waiting)}"
        )
        failed = self._failed_so_far()
        return f"{message}; already failed: {some(failed)}" if failed else message

    def _failed_so_far(self) -> list[str]:
        return [
            f"{instance_id} {ssm.describe_status(*status)}"
            for (_, instance_id), status in self._ended.items()
            if ssm.invocation_outcome(*status) == FAILED
        ]

    def _list_statuses(self) -> dict[tuple[str, str], tuple[str, str | None]]:
        statuses = dict(self._ended)
        paginator = self.hook.conn.get_paginator("list_command_invocations")
        for command_id, instance_ids in self.command_instances.items():
            if all((command_id, instance_id) in self._ended for instance_id in instance_ids):
                continue
            expected = set(instance_ids)
            for page in paginator.paginate(
                CommandId=command_id, Details=False, PaginationConfig={"PageSize": ssm.INVOCATIONS_PAGE}
            ):
                for invocation in page.get("CommandInvocations", []):
                    if invocation.get("InstanceId") in expected:
                        statuses[command_id, invocation["InstanceId"]] = (
                            invocation.get("Status", "Pending"),
                            invocation.get("StatusDetails"),
                        )
        return statuses

    def poll_once(self) -> dict[str, Any] | None:
        statuses = self._list_statuses()
        waiting: list[str] = []
        for pair in self.pairs:
            # Right after SendCommand, SSM may not list an invocation yet: that is pending, not done.
            status = statuses.get(pair, ("Pending", ssm.NOT_LISTED))
            if ssm.invocation_outcome(*status) == "waiting":
                waiting.append(f"{pair[1]} ({ssm.describe_status(*status)})")
            else:
                self._ended[pair] = status
        self._waiting = waiting
        if waiting:
            self.log.info(
                "Run Command %s: %d of %d invocation(s) ended; waiting on %s",
                ", ".join(self.command_ids),
                len(self.pairs) - len(waiting),
                len(self.pairs),
                some(waiting),
            )
            failed = self._failed_so_far()
            if failed:
                self.log.warning("Run Command already failed on %s", some(failed))
            return None
        return self._final_event()

    def _final_event(self) -> dict[str, Any]:
        results = {
            instance_id: self._result(command_id, instance_id, *self._ended[command_id, instance_id])
            for command_id, instance_id in self.pairs
        }
        failed = [
            f"{instance_id} {ssm.describe_status(result['status'], result['status_details'])}"
            + (f", exit code {result['exit_code']}" if result["exit_code"] is not None else "")
            + f" (command {result['command_id']})"
            for instance_id, result in results.items()
            if result["status"] != ssm.SUCCESS_STATUS
        ]
        return {
            "status": FAILED if failed else SUCCESS,
            "message": f"{len(failed)} of {len(results)} instance(s) failed: {'; '.join(failed)}"
            if failed
            else f"succeeded on {len(results)} instance(s)",
            "command_ids": self.command_ids,
            "results": results,
        }

    def _result(self, command_id: str, instance_id: str, status: str, details: str | None) -> dict[str, Any]:
        # The listing's status decides the outcome (it is what the wait was about); the
        # invocation adds what the listing leaves out without Details: exit code, times, output.
        try:
            invocation = self.hook.conn.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except ClientError as error:
            self.log.warning(
                "Could not read the output of command %s on %s: %s: %s",
                command_id,
                instance_id,
                error_code(error),
                error_message(error),
            )
            invocation = {}
        return {
            "command_id": command_id,
            "status": status,
            "status_details": details,
            "exit_code": invocation.get("ResponseCode"),
            "duration_seconds": ssm.duration_seconds(
                invocation.get("ExecutionStartDateTime"), invocation.get("ExecutionEndDateTime")
            ),
            "stdout_tail": ssm.tail(invocation.get("StandardOutputContent"), self.log_tail_lines),
            "stderr_tail": ssm.tail(invocation.get("StandardErrorContent"), self.log_tail_lines),
            "stdout_url": invocation.get("StandardOutputUrl") or None,
            "stderr_url": invocation.get("StandardErrorUrl") or None,
        }

    async def on_kill(self) -> None:
        # The user killed the deferred task: the command must not keep running unwatched. Even
        # the hook is built in the thread, since it reads its Airflow connection synchronously.
        await asyncio.to_thread(lambda: ssm.cancel_commands(self.hook.conn, self.command_instances, self.log))
