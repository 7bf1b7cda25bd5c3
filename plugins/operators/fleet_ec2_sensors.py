"""A sensor that waits for a list of EC2 instances to reach a state, reading the agent's tags."""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook
from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowSensorTimeout, PokeReturnValue, conf
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR
from botocore.exceptions import BotoCoreError, ClientError

from operators.fleet_aws import (
    FleetError,
    FleetStateFailure,
    describe_instances,
    normalize_instance_ids,
    with_default_retries,
)
from operators.fleet_done_checks import skip_if_done
from operators.fleet_ec2_triggers import FleetInstanceStateTrigger
from operators.fleet_turn_guard import FleetTurnGuard
from operators.fleet_wait import ERROR, FAILED, SUCCESS, TIMEOUT

if TYPE_CHECKING:
    from airflow.sdk import Context


class FleetInstanceStateSensor(FleetTurnGuard, AwsBaseSensor[EC2Hook]):
    """Wait until every instance of a list is in ``target_state``; return their states and tags.

    Each poke is one poll of :class:`~operators.fleet_ec2_triggers.FleetInstanceStateTrigger`
    (one DescribeInstances for the whole list), so the poke and the deferred wait decide alike.
    The XCom value is ``{instance_id: {"state": ..., "tags": {...}}}``.

    An instance in one of ``failure_states``, or an agent whose heartbeat is older than
    ``heartbeat_grace``, fails the sensor at once and without retries
    (:class:`~operators.fleet_aws.FleetStateFailure`, an ``AirflowFailException``): a retry would
    read the same state again. An API error that outlived botocore's own retries raises a plain
    :class:`~operators.fleet_aws.FleetError`, so the task's retries apply to it. ``soft_fail``
    turns either into a skip, as for any sensor.

    Deferred, the wait polls every ``poke_interval`` seconds for at most ``timeout`` seconds
    and ends in ``AirflowSensorTimeout`` past it, like a poking sensor.

    :param instance_ids: the instances to watch: a list, or a comma-separated string (templated)
    :param target_state: the EC2 state every instance must reach (templated)
    :param failure_states: states that fail the sensor at once; by default those from which the
        target cannot be reached (``shutting-down``/``terminated`` for ``stopped``)
    :param require_status_ok: with ``running``, also wait for the EC2 status checks to pass
    :param heartbeat_grace: seconds of agent heartbeat silence tolerated; ``None``: no check
    :param run_date: only agent tags of this run date count for the heartbeat check (templated)
    :param skip_when_done_for: a run date (templated): when an instance's agent already completed
        it, skip at once instead of waiting (a cleared step of a day already done, see
        :mod:`operators.fleet_done_checks`)
    :param stop_on_failure: when the wait fails or times out (an overrun, a silent agent),
        force-stop the instances that are still up before failing, so that no VM is left
        running unwatched
    :param deferrable: wait in the triggerer instead of a worker slot
    :param turn_task_id, turn_poll_interval: in a cleared run, wait until the fleet is the run's
        again before watching (:class:`~operators.fleet_turn_guard.FleetTurnGuard`)
    :param aws_conn_id: the Airflow connection used for AWS credentials
    :param region_name: AWS region; the connection's when not given
    :param verify: whether to verify SSL certificates
    :param botocore_config: botocore client configuration; bounded standard-mode retries are
        added unless it sets ``retries``
    """

    aws_hook_class = EC2Hook
    template_fields: Sequence[str] = aws_template_fields(
        "instance_ids", "target_state", "run_date", "skip_when_done_for"
    )
    ui_color = "#cc8811"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        instance_ids: Sequence[str] | str,
        target_state: str,
        failure_states: Sequence[str] | None = None,
        require_status_ok: bool = False,
        heartbeat_grace: float | None = None,
        run_date: str | None = None,
        skip_when_done_for: str | None = None,
        stop_on_failure: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.stop_on_failure = stop_on_failure
        self.instance_ids = instance_ids
        self.target_state = target_state
        self.failure_states = failure_states
        self.require_status_ok = require_status_ok
        self.heartbeat_grace = heartbeat_grace
        self.run_date = run_date
        self.skip_when_done_for = skip_when_done_for
        self.deferrable = deferrable

    @property
    def _hook_parameters(self) -> dict[str, Any]:
        return {
            **super()._hook_parameters,
            "config": with_default_retries(self.botocore_config, self.aws_conn_id),
            "api_type": "client_type",
        }

    def build_trigger(self) -> FleetInstanceStateTrigger:
        """The wait as a trigger: polled once per poke, or handed to the triggerer whole."""
        # A zero interval gives no pacing to divide the timeout by: one poll, then the wait ends.
        attempts = max(1, math.ceil(self.timeout / self.poke_interval)) if self.poke_interval > 0 else 1
        return FleetInstanceStateTrigger(
            instance_ids=normalize_instance_ids(self.instance_ids, "instance_ids"),
            target_state=self.target_state,
            failure_states=self.failure_states,
            require_status_ok=self.require_status_ok,
            heartbeat_grace=self.heartbeat_grace,
            run_date=self.run_date,
            waiter_delay=self.poke_interval,
            waiter_max_attempts=attempts,
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            botocore_config=self.botocore_config,
        )

    @cached_property
    def _poke_trigger(self) -> FleetInstanceStateTrigger:
        # One trigger for all pokes of this try, so they share one boto3 client.
        return self.build_trigger()

    def execute(self, context: Context) -> Any:
        self.hold_turn(context)
        if self.skip_when_done_for:
            ids = normalize_instance_ids(self.instance_ids, "instance_ids")
            skip_if_done(
                context, describe_instances(self.hook.conn, ids), self.skip_when_done_for, "wait for"
            )
        if not self.deferrable:
            with self._stopping_on_failure():
                return super().execute(context)
        # Airflow 3.3 does not apply execution_timeout to a deferred task: bound it here.
        self.defer(
            trigger=self.build_trigger(),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        event = self._poke_trigger._poll_guarded()
        if event is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._result(event))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        with self._stopping_on_failure():
            return self._result(event)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        if next_method != TRIGGER_FAIL_REPR:
            return super().resume_execution(next_method, next_kwargs, context)
        # The deferral's own timeout fired before the trigger's last poll (each poll takes time, and
        # the triggerer may pick the trigger up late): Airflow resumes the task here to fail it, not
        # in execute_complete, and the base class turns that into AirflowSensorTimeout. An overrun
        # is an overrun whichever timeout noticed it first.
        with self._stopping_on_failure():
            return super().resume_execution(next_method, next_kwargs, context)

    @contextmanager
    def _stopping_on_failure(self) -> Generator[None]:
        """With ``stop_on_failure``: a failed or timed-out wait force-stops what is still up."""
        try:
            yield
        except (FleetStateFailure, AirflowSensorTimeout) as error:
            if self.stop_on_failure:
                self._force_stop(str(error))
            raise

    def _force_stop(self, reason: str) -> None:
        ids = normalize_instance_ids(self.instance_ids, "instance_ids")
        try:
            up = [
                view.instance_id
                for view in describe_instances(self.hook.conn, ids).values()
                if view.state in ("pending", "running")
            ]
            if up:
                self.hook.conn.stop_instances(InstanceIds=up, Force=True)
        except (FleetError, ClientError, BotoCoreError) as error:
            # The wait has failed already; say loudly that the VM may still be running.
            self.log.error("Could not force-stop %s after the failed wait: %s", ", ".join(ids), error)
            return
        if up:
            self.log.error("Force-stopped %s: %s", ", ".join(up), reason)

    def _result(self, event: dict[str, Any] | None) -> dict[str, Any]:
        """The instances of a success event; the matching exception for any other."""
        status = (event or {}).get("status")
        message = (event or {}).get("message", event)
        if status == SUCCESS:
            instances = event["instances"]
            self.log.info(
                "All %d instance(s) %s: %s",
                len(instances),
                self.target_state,
                ", ".join(instances),
            )
            return instances
        if status == FAILED:
            raise FleetStateFailure(f"Waiting for {self.target_state} failed: {message}")
        if status == TIMEOUT:
            raise AirflowSensorTimeout(f"Waiting for {self.target_state} timed out: {message}")
        if status == ERROR:
            raise FleetError(f"Waiting for {self.target_state} hit an error: {message}")
        raise FleetError(f"Waiting for {self.target_state}: unexpected trigger event {event!r}")
