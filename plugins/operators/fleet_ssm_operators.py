"""Operators that act through AWS Systems Manager on a list of EC2 instances."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.ssm import SsmHook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from botocore.exceptions import ClientError

from operators import fleet_ssm as ssm
from operators.fleet_aws import (
    FleetAwsTask,
    FleetError,
    chunked,
    error_code,
    error_message,
    normalize_instance_ids,
)
from operators.fleet_ssm_triggers import FleetRunCommandTrigger
from operators.fleet_wait import SUCCESS, TIMEOUT, FleetDeferring, raise_for_event

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_DOCUMENT = "AWS-RunShellScript"
# AWS's script documents: they take "commands" and an "executionTimeout" in seconds (default 3600).
SCRIPT_DOCUMENTS = frozenset({"AWS-RunShellScript", "AWS-RunPowerShellScript"})


class FleetRunCommandOperator(FleetDeferring, FleetAwsTask, AwsBaseOperator[SsmHook]):
    """Run an SSM document on a list of instances and wait until it has ended on every one.

    SendCommand goes out in batches of 50 instances; the wait
    (:class:`~operators.fleet_ssm_triggers.FleetRunCommandTrigger`) succeeds only when every
    (command, instance) pair ended in ``Success``. A batch that cannot be sent cancels those sent
    before it. Returns ``{instance_id: result}`` (the trigger's results); pushes XCom
    ``command_ids`` at once, and ``results`` when the command failed.

    :param parameters: the document's parameters (templated); a string value is a one-element list
    :param execution_timeout_seconds: the script documents' ``executionTimeout``, unless
        ``parameters`` holds one (only for :data:`SCRIPT_DOCUMENTS`)
    :param delivery_timeout_seconds: SendCommand's ``TimeoutSeconds``
    :param comment: shown in the SSM console (templated; cut to 100 characters)
    :param send_retry_seconds, send_retry_delay: how long, and how often, to retry SendCommand
        while SSM answers ``InvalidInstanceId`` (an agent that registered moments ago)
    :param reuse_in_flight: watch a command of the same document and ``comment`` still in flight
        on an instance (an earlier try) instead of sending it again; needs a ``comment``
    :param cancel_on_timeout: when the polls run out, cancel the command where it still runs
    """

    aws_hook_class = SsmHook
    template_fields: Sequence[str] = aws_template_fields(
        "instance_ids",
        "document_name",
        "parameters",
        "comment",
        "output_s3_bucket",
        "output_s3_prefix",
    )
    template_fields_renderers = {"parameters": "json"}

    def __init__(
        self,
        *,
        instance_ids: Sequence[str] | str,
        document_name: str = DEFAULT_DOCUMENT,
        parameters: Mapping[str, Any] | None = None,
        execution_timeout_seconds: int | None = None,
        delivery_timeout_seconds: int | None = None,
        comment: str | None = None,
        output_s3_bucket: str | None = None,
        output_s3_prefix: str | None = None,
        wait_for_completion: bool = True,
        waiter_delay: int = 15,
        waiter_max_attempts: int = 240,
        send_retry_seconds: float = 120,
        send_retry_delay: float = 10,
        log_tail_lines: int = 20,
        cancel_on_timeout: bool = True,
        reuse_in_flight: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.instance_ids = instance_ids
        self.document_name = document_name
        self.parameters = parameters
        self.execution_timeout_seconds = execution_timeout_seconds
        self.delivery_timeout_seconds = delivery_timeout_seconds
        self.comment = comment
        self.output_s3_bucket = output_s3_bucket
        self.output_s3_prefix = output_s3_prefix
        self.wait_for_completion = wait_for_completion
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts
        self.send_retry_seconds = send_retry_seconds
        self.send_retry_delay = send_retry_delay
        self.log_tail_lines = log_tail_lines
        self.cancel_on_timeout = cancel_on_timeout
        self.reuse_in_flight = reuse_in_flight
        if reuse_in_flight and not comment:
            raise ValueError(f"reuse_in_flight needs a comment that identifies the run (task {self.task_id})")
        # Swappable in tests (as is ``sleep``); not operator arguments.
        self.clock: Callable[[], float] = time.monotonic
        # What this task sent, for on_kill.
        self._command_instances: dict[str, list[str]] = {}

    def execute(self, context: Context) -> dict[str, Any]:
        instance_ids = normalize_instance_ids(self.instance_ids)
        parameters = self._document_parameters()
        bound = self.waiter_delay * self.waiter_max_attempts
        if self.wait_for_completion and bound < (self.execution_timeout_seconds or 0):
            self.log.warning(
                "The wait gives up after %s s but the script may run %s s (execution_timeout_seconds)",
                bound,
                self.execution_timeout_seconds,
            )

        # A dict of its own per try: the running task is a shallow copy of the DAG's operator, so
        # the one made in __init__ is shared with every other run of it in this process.
        self._command_instances = {}
        if self.reuse_in_flight:
            # A retry of this task: never send the same work twice while it still runs.
            self._command_instances.update(self._in_flight(instance_ids))
            adopted = {i for ids in self._command_instances.values() for i in ids}
            instance_ids_to_send = [i for i in instance_ids if i not in adopted]
        else:
            instance_ids_to_send = instance_ids
        try:
            for batch in chunked(instance_ids_to_send, ssm.SSM_INSTANCE_BATCH):
                command_id = self._send(batch, parameters)
                # Recorded batch by batch so that on_kill can cancel what was already sent.
                self._command_instances[command_id] = batch
        except Exception:
            if self._command_instances:
                # The task fails without watching the batches already sent, and its retry would
                # send them again: stop them rather than leave them running unwatched.
                self.log.error("Sending a later batch failed; cancelling the batches already sent")
                ssm.cancel_commands(self.hook.conn, self._command_instances, self.log)
            raise
        command_instances = dict(self._command_instances)
        self.log.info(
            "Sent %s to %d instance(s) as command(s) %s",
            self.document_name,
            len(instance_ids),
            ", ".join(command_instances),
        )
        context["ti"].xcom_push(key="command_ids", value=list(command_instances))

        if not self.wait_for_completion:
            return {
                instance_id: {"command_id": command_id}
                for command_id, ids in command_instances.items()
                for instance_id in ids
            }

        trigger = FleetRunCommandTrigger(
            command_instances=command_instances,
            log_tail_lines=self.log_tail_lines,
            waiter_delay=self.waiter_delay,
            waiter_max_attempts=self.waiter_max_attempts,
            # Polled here, it reads through this task's own client: the one on_kill cancels through.
            hook=self.hook,
            **self.connection_args,
        )
        # The command map rides along so that a timeout can still cancel what runs.
        kwargs = {"command_instances": command_instances}
        event = self.defer_or_wait(trigger, method_name="execute_complete", kwargs=kwargs)
        return self.execute_complete(context, event, **kwargs)

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        command_instances: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[str, Any]:
        status = (event or {}).get("status")
        results: dict[str, Any] = (event or {}).get("results") or {}
        self._log_results(results)
        if status != SUCCESS and results:
            # A failing task has no return value; a report or teardown task may still want these.
            context["ti"].xcom_push(key="results", value=results)
        if status == TIMEOUT and self.cancel_on_timeout and command_instances:
            # The task fails now; a command still running would go on unwatched, and the task's
            # retry would send it a second time.
            ssm.cancel_commands(self.hook.conn, command_instances, self.log)
        self._raise_for_event(event)
        return results

    def _raise_for_event(self, event: dict[str, Any] | None) -> None:
        raise_for_event(event, f"Run Command of {self.document_name}")

    def on_kill(self) -> None:
        if not self._command_instances:
            return
        # Killed while waiting in a worker: stop the work this task started on the instances.
        ssm.cancel_commands(self.hook.conn, self._command_instances, self.log)

    def _document_parameters(self) -> dict[str, list[str]]:
        parameters = {
            name: [value] if isinstance(value, str) else [str(item) for item in value]
            for name, value in (self.parameters or {}).items()
        }
        if self.document_name in SCRIPT_DOCUMENTS and not parameters.get("commands"):
            raise ValueError(
                f"{self.document_name} needs parameters={{'commands': [...]}} (task {self.task_id}); "
                f"got {self.parameters!r}"
            )
        if self.execution_timeout_seconds is not None and "executionTimeout" not in parameters:
            if self.document_name not in SCRIPT_DOCUMENTS:
                raise ValueError(
                    f"execution_timeout_seconds={self.execution_timeout_seconds!r} only applies to "
                    f"{', '.join(sorted(SCRIPT_DOCUMENTS))}; document {self.document_name!r} takes its "
                    "timeout through its own parameters"
                )
            parameters["executionTimeout"] = [str(int(self.execution_timeout_seconds))]
        return parameters

    def _in_flight(self, instance_ids: Sequence[str]) -> dict[str, list[str]]:
        """``{command_id: [instance ids]}`` of this task's command still pending or running."""
        found: dict[str, list[str]] = {}
        comment = (self.comment or "")[: ssm.COMMENT_MAX]
        paginator = self.hook.conn.get_paginator("list_commands")
        for instance_id in instance_ids:
            for page in paginator.paginate(InstanceId=instance_id):
                match = next((c for c in page.get("Commands", []) if self._in_flight_here(c, comment)), None)
                if match:
                    self.log.warning(
                        "%s still runs on %s as command %s (%s) from an earlier try: watching it "
                        "instead of sending it again",
                        self.document_name,
                        instance_id,
                        match["CommandId"],
                        match["Status"],
                    )
                    found.setdefault(match["CommandId"], []).append(instance_id)
                    break
        return found

    def _in_flight_here(self, command: dict[str, Any], comment: str) -> bool:
        return (
            command.get("DocumentName") == self.document_name
            and command.get("Comment") == comment
            and command.get("Status") in ssm.IN_FLIGHT_STATUSES
        )

    def _send(self, instance_ids: list[str], parameters: dict[str, list[str]]) -> str:
        request: dict[str, Any] = {"DocumentName": self.document_name, "InstanceIds": instance_ids}
        if parameters:
            request["Parameters"] = parameters
        if self.comment:
            request["Comment"] = self.comment[: ssm.COMMENT_MAX]
        if self.delivery_timeout_seconds is not None:
            request["TimeoutSeconds"] = int(self.delivery_timeout_seconds)
        if self.output_s3_bucket:
            request["OutputS3BucketName"] = self.output_s3_bucket
            if self.output_s3_prefix:
                request["OutputS3KeyPrefix"] = self.output_s3_prefix

        deadline = self.clock() + self.send_retry_seconds
        while True:
            try:
                return self.hook.conn.send_command(**request)["Command"]["CommandId"]
            except ClientError as error:
                if error_code(error) != "InvalidInstanceId":
                    raise
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise FleetError(
                        f"SSM refused to send {self.document_name} to {', '.join(instance_ids)} with "
                        f"InvalidInstanceId for {self.send_retry_seconds} s: {error_message(error)}. "
                        "Each instance must be running, with its SSM agent online and an instance "
                        "profile that allows SSM."
                    ) from error
                # An agent that registered moments ago is not yet accepted everywhere in SSM.
                delay = min(self.send_retry_delay, remaining)
                self.log.info(
                    "SSM does not accept %s yet (InvalidInstanceId: %s); retrying in %.0f s",
                    ", ".join(instance_ids),
                    error_message(error),
                    delay,
                )
                self.sleep(delay)

    def _log_results(self, results: Mapping[str, Mapping[str, Any]]) -> None:
        for instance_id, result in results.items():
            log = self.log.info if result.get("status") == ssm.SUCCESS_STATUS else self.log.error
            log(
                "%s: %s, exit code %s after %s s (command %s)",
                instance_id,
                ssm.describe_status(result.get("status", "?"), result.get("status_details")),
                result.get("exit_code"),
                result.get("duration_seconds"),
                result.get("command_id"),
            )
            for stream in ("stdout", "stderr"):
                if result.get(f"{stream}_tail"):
                    self.log.info(
                        "%s %s (last %d lines):\n%s",
                        instance_id,
                        stream,
                        self.log_tail_lines,
                        result[f"{stream}_tail"],
                    )
                if result.get(f"{stream}_url"):
                    self.log.info("%s full %s: %s", instance_id, stream, result[f"{stream}_url"])
