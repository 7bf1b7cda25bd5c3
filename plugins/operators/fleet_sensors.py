"""The base of the fleet's sensors: every poke is one poll of the trigger the deferral hands over."""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.common.compat.sdk import AirflowSensorTimeout, PokeReturnValue
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR

from operators.fleet_aws import FleetAwsTask, FleetStateFailure, normalize_instance_ids
from operators.fleet_done_checks import skip_if_done
from operators.fleet_ec2 import describe_instances
from operators.fleet_wait import RETRYABLE, EventOutcome, FleetDeferring, FleetPollTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class FleetTriggerSensor(FleetDeferring, FleetAwsTask, AwsBaseSensor):
    """Wait on a list of instances through one trigger: each poke is one of its polls, a deferral
    hands it over whole, so poking and deferred the sensor decides alike.

    Every fleet sensor speaks the sensors' vocabulary: a poll every ``poke_interval`` seconds,
    for at most ``timeout`` seconds (``ceil(timeout / poke_interval)`` polls when deferred). The
    trigger's final event becomes the task's result or exception through :attr:`outcome`; a poll
    that hit an AWS error is an ``error`` event, whether poked or deferred.

    A subclass sets ``trigger_class`` and ``trigger_fields``, ``what`` (the wait, for messages)
    and ``outcome``.

    :param instance_ids: the instances to watch: a list, or a comma-separated string (templated)
    :param skip_when_done_for: a run date (templated): when an instance's agent already completed
        it, skip at once instead of waiting (one DescribeInstances; a cleared step of a day
        already done, see :mod:`operators.fleet_done_checks`)
    :param deferrable: wait in the triggerer instead of a worker slot
    :param aws_conn_id, region_name, verify, botocore_config: as for the provider's AWS sensors;
        bounded standard-mode retries are added unless ``botocore_config`` sets ``retries``
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
        """The wait as a trigger: polled once per poke, or handed to the triggerer whole."""
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
        """The instances of a success event; this sensor's exception for any other."""
        event = self.outcome.check(event, self.what)
        self.log.info("%s", self._success_message(event))
        return event.get("instances")

    def _success_message(self, event: dict[str, Any]) -> str:
        return event.get("message", "")

    def _poke_timeout_detail(self) -> str | None:
        """What a poking sensor's timeout adds to the base class's "timed out" message."""
        return None

    @contextmanager
    def _failing_wait(self) -> Generator[None]:
        """Let :meth:`_on_failed_wait` act on a failed or timed-out wait before the task fails."""
        try:
            yield
        except (FleetStateFailure, AirflowSensorTimeout) as error:
            self._on_failed_wait(str(error))
            raise

    def _on_failed_wait(self, reason: str) -> None:
        """A subclass's last act after its wait failed (nothing by default)."""
