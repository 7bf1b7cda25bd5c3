"""A sensor that waits for a list of EC2 instances to reach a state, reading the agent's tags."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowSensorTimeout
from botocore.exceptions import BotoCoreError, ClientError

from operators.fleet_aws import FleetError, FleetStateFailure, normalize_instance_ids
from operators.fleet_ec2 import UP_STATES, describe_instances
from operators.fleet_ec2_triggers import FleetInstanceStateTrigger
from operators.fleet_sensors import FleetTriggerSensor
from operators.fleet_turn_guard import FleetTurnGuard
from operators.fleet_wait import ERROR, FAILED, TIMEOUT, EventOutcome

if TYPE_CHECKING:
    from airflow.sdk import Context

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
    """Wait until every instance of a list is in ``target_state``; return their states and tags.

    Each poke is one poll of :class:`~operators.fleet_ec2_triggers.FleetInstanceStateTrigger`
    (one DescribeInstances for the whole list), and the deferred wait is that trigger
    (:class:`~operators.fleet_sensors.FleetTriggerSensor`). The XCom value is
    ``{instance_id: {"state": ..., "tags": {...}}}``.

    An instance in one of ``failure_states``, or an agent whose heartbeat is older than
    ``heartbeat_grace``, fails the sensor at once and without retries
    (:class:`~operators.fleet_aws.FleetStateFailure`, an ``AirflowFailException``): a retry would
    read the same state again. An API error that outlived botocore's own retries raises a plain
    :class:`~operators.fleet_aws.FleetError`, so the task's retries apply to it. Past ``timeout``
    it raises ``AirflowSensorTimeout``, poking or deferred (the deferral ends at ``timeout``
    sharp). ``soft_fail`` turns any of them into a skip, as for any sensor.

    :param target_state: the EC2 state every instance must reach (templated)
    :param failure_states: states that fail the sensor at once; by default those from which the
        target cannot be reached (``shutting-down``/``terminated`` for ``stopped``)
    :param require_status_ok: with ``running``, also wait for the EC2 status checks to pass
    :param heartbeat_grace: seconds of agent heartbeat silence tolerated; ``None``: no check
    :param run_date: only agent tags of this run date count for the heartbeat check (templated)
    :param stop_on_failure: when the wait fails or times out (an overrun, a silent agent),
        force-stop the instances that are still up before failing, so that no VM is left
        running unwatched
    :param turn_task_id, turn_poll_interval: in a cleared run, wait until the fleet is the run's
        again before watching (:class:`~operators.fleet_turn_guard.FleetTurnGuard`)
    :param instance_ids, skip_when_done_for, deferrable, aws_conn_id, region_name, verify,
        botocore_config: as for :class:`~operators.fleet_sensors.FleetTriggerSensor`
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
        """With ``stop_on_failure``: a failed or timed-out wait force-stops what is still up."""
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
