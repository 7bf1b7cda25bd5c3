"""The fleet's sensors: every poke is one poll of the trigger that a deferral hands over whole.

:class:`FleetInstanceStateSensor` waits for EC2 states and reads the agent's tags;
:class:`FleetSsmAgentOnlineSensor` waits for the SSM agents.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook
from airflow.providers.amazon.aws.hooks.ssm import SsmHook
from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowSensorTimeout, PokeReturnValue
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR
from botocore.exceptions import BotoCoreError, ClientError

from operators.fleet_aws import FleetAwsTask, FleetError, FleetStateFailure, normalize_instance_ids
from operators.fleet_done_checks import skip_if_done
from operators.fleet_ec2 import UP_STATES, describe_instances
from operators.fleet_ec2_triggers import FleetInstanceStateTrigger
from operators.fleet_ssm_triggers import FleetSsmAgentOnlineTrigger
from operators.fleet_turn_sensors import FleetTurnGuard
from operators.fleet_wait import (
    DEFER_TIMEOUT_MARGIN,
    ERROR,
    FAILED,
    RETRYABLE,
    TIMEOUT,
    EventOutcome,
    FleetDeferring,
    FleetPollTrigger,
)

if TYPE_CHECKING:
    from airflow.sdk import Context


class FleetTriggerSensor(FleetDeferring, FleetAwsTask, AwsBaseSensor):
    """Wait on a list of instances through one trigger: each poke is one of its polls, a deferral
    hands it over whole (``ceil(timeout / poke_interval)`` polls), so both ways decide alike.
    A subclass sets ``trigger_class``, ``trigger_fields``, ``what`` and ``outcome``.

    :param instance_ids: the instances to watch: a list, or a comma-separated string (templated)
    :param skip_when_done_for: a run date (templated): skip at once when an instance's agent
        already completed it (:mod:`operators.fleet_done_checks`)
    """

    trigger_class: type[FleetPollTrigger]
    what: str  # the wait, as its messages name it
    # The sensor's attributes that its trigger takes by the same names.
    trigger_fields: tuple[str, ...] = ()
    outcome: EventOutcome = RETRYABLE
    # Seconds a deferral may outlast ``timeout``. With a margin the trigger's own timeout event
    # (whose exception the outcome chooses) normally comes first; without one, the deferral's
    # timeout ends the wait at ``timeout`` sharp, as AirflowSensorTimeout.
    defer_margin: float = 0
    # Look once in the worker before deferring: a wait that is already over then costs no
    # round trip through the triggerer.
    look_before_deferring = False

    def __init__(
        self,
        *,
        instance_ids: Sequence[str] | str,
        skip_when_done_for: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.instance_ids = instance_ids
        self.skip_when_done_for = skip_when_done_for

    def build_trigger(self, **kwargs: Any) -> FleetPollTrigger:
        # A zero interval gives no pacing to divide the timeout by: one poll, then the wait ends.
        polls = max(1, math.ceil(self.timeout / self.poke_interval)) if self.poke_interval > 0 else 1
        return self.trigger_class(
            instance_ids=normalize_instance_ids(self.instance_ids, "instance_ids"),
            waiter_delay=self.poke_interval,
            waiter_max_attempts=polls,
            # The subclass's own trigger arguments, rendered by now.
            **{name: getattr(self, name) for name in self.trigger_fields},
            **self.connection_args,
            **kwargs,
        )

    @cached_property
    def poke_trigger(self) -> FleetPollTrigger:
        # One trigger for all pokes of this try, polling through this task's own client.
        return self.build_trigger(hook=self.hook)

    def execute(self, context: Context) -> Any:
        if self.skip_when_done_for:
            ids = normalize_instance_ids(self.instance_ids, "instance_ids")
            views = describe_instances(self.ec2_hook.conn, ids)
            skip_if_done(context, views, self.skip_when_done_for, "wait for")
        if not self.deferrable:
            try:
                with self._failing_wait():
                    return super().execute(context)
            except AirflowSensorTimeout as error:
                detail = self._poke_timeout_detail()
                if detail is None:
                    raise
                raise AirflowSensorTimeout(f"{error} {detail}") from error
        if self.look_before_deferring:
            event = self.poke_trigger.poll_guarded()
            if event is not None:
                return self.execute_complete(context, event)
        # Airflow 3.3 does not apply execution_timeout to a deferred task: bound it here.
        self.defer(
            trigger=self.build_trigger(),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + self.defer_margin),
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        event = self.poke_trigger.poll_guarded()
        if event is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._result(event))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        with self._failing_wait():
            return self._result(event)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        if next_method != TRIGGER_FAIL_REPR:
            return super().resume_execution(next_method, next_kwargs, context)
        # The deferral's own timeout fired before the trigger's last poll (each poll takes time, and
        # the triggerer may pick the trigger up late): Airflow resumes the task here to fail it, not
        # in execute_complete, and the base class turns that into AirflowSensorTimeout. A wait that
        # failed is one, whichever timeout noticed it first.
        with self._failing_wait():
            return super().resume_execution(next_method, next_kwargs, context)

    def _result(self, event: dict[str, Any] | None) -> Any:
        event = self.outcome.check(event, self.what)
        self.log.info("%s", self._success_message(event))
        return event.get("instances")

    def _success_message(self, event: dict[str, Any]) -> str:
        return event.get("message", "")

    def _poke_timeout_detail(self) -> str | None:
        """What a poking sensor's timeout adds to the base class's message."""
        return None

    @contextmanager
    def _failing_wait(self) -> Generator[None]:
        try:
            yield
        except (FleetStateFailure, AirflowSensorTimeout) as error:
            self._on_failed_wait(str(error))
            raise

    def _on_failed_wait(self, reason: str) -> None:
        """A subclass's last act after its wait failed (nothing by default)."""


# A state reached that the target cannot come back from is final (no retries); a timeout is a
# sensor's timeout; an API error stays a plain FleetError, to which the task's retries apply.
STATE_OUTCOME = EventOutcome(
    errors={FAILED: FleetStateFailure, TIMEOUT: AirflowSensorTimeout},
    messages={
        FAILED: "{what} failed: {message}",
        TIMEOUT: "{what} timed out: {message}",
        ERROR: "{what} hit an error: {message}",
    },
    otherwise="{what}: unexpected trigger event {event!r}",
)


class FleetInstanceStateSensor(FleetTurnGuard, FleetTriggerSensor):
    """Wait until every instance of a list is in ``target_state``
    (:class:`~operators.fleet_ec2_triggers.FleetInstanceStateTrigger`, whose arguments it takes);
    return ``{instance_id: {"state": ..., "tags": {...}}}``.

    A failure state or a silent agent fails at once without retries (``FleetStateFailure``); an
    API error is a plain ``FleetError``; past ``timeout``, ``AirflowSensorTimeout``.

    :param stop_on_failure: when the wait fails or times out (an overrun, a silent agent),
        force-stop the instances still up before failing: no VM is left running unwatched
    """

    aws_hook_class = EC2Hook
    trigger_class = FleetInstanceStateTrigger
    trigger_fields = ("target_state", "failure_states", "require_status_ok", "heartbeat_grace", "run_date")
    outcome = STATE_OUTCOME
    template_fields: Sequence[str] = aws_template_fields(
        "instance_ids", "target_state", "run_date", "skip_when_done_for"
    )
    ui_color = "#cc8811"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        target_state: str,
        failure_states: Sequence[str] | None = None,
        require_status_ok: bool = False,
        heartbeat_grace: float | None = None,
        run_date: str | None = None,
        stop_on_failure: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.stop_on_failure = stop_on_failure
        self.target_state = target_state
        self.failure_states = failure_states
        self.require_status_ok = require_status_ok
        self.heartbeat_grace = heartbeat_grace
        self.run_date = run_date

    @property
    def what(self) -> str:
        return f"Waiting for {self.target_state}"

    def execute(self, context: Context) -> Any:
        self.hold_turn(context)
        return super().execute(context)

    def _success_message(self, event: dict[str, Any]) -> str:
        instances = event["instances"]
        return f"All {len(instances)} instance(s) {self.target_state}: {', '.join(instances)}"

    def _on_failed_wait(self, reason: str) -> None:
        if not self.stop_on_failure:
            return
        ids = normalize_instance_ids(self.instance_ids, "instance_ids")
        try:
            views = describe_instances(self.hook.conn, ids)
            up = [view.instance_id for view in views.values() if view.state in UP_STATES]
            if up:
                self.hook.conn.stop_instances(InstanceIds=up, Force=True)
        except (FleetError, ClientError, BotoCoreError) as error:
            # The wait has failed already; say loudly that the VM may still be running.
            self.log.error("Could not force-stop %s after the failed wait: %s", ", ".join(ids), error)
            return
        if up:
            self.log.error("Force-stopped %s: %s", ", ".join(up), reason)


class FleetSsmAgentOnlineSensor(FleetTriggerSensor):
    """Wait until the SSM agent of every instance of a list pings ``Online``
    (:class:`~operators.fleet_ssm_triggers.FleetSsmAgentOnlineTrigger`).

    Deferred, the trigger's timeout comes first and raises a :class:`~operators.fleet_aws.FleetError`,
    which the task's retries cover (a reboot often brings an agent back). Returns, per instance,
    ``{ping_status, agent_version, platform_name}``.
    """

    aws_hook_class = SsmHook
    trigger_class = FleetSsmAgentOnlineTrigger
    template_fields: Sequence[str] = aws_template_fields("instance_ids", "skip_when_done_for")
    defer_margin = DEFER_TIMEOUT_MARGIN
    look_before_deferring = True
    what = "SSM agent online wait"

    def __init__(self, *, poke_interval: float = 15, timeout: float = 600, **kwargs: Any) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)

    def _poke_timeout_detail(self) -> str:
        # The base class's message says only how long it waited; say which agents are missing.
        return f"SSM agent not online on: {self.poke_trigger.describe_not_online()}"
