"""``wait_turn``: the first task of a run, which waits until the fleet is this run's alone."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowSensorTimeout, BaseSensorOperator

from operators.fleet_turn import SdkTurnReader, TurnReader, decide_go, read_turn
from operators.fleet_turn_triggers import GATE_OUTCOME, FleetTurnTrigger, late_message, utcnow
from operators.fleet_wait import DEFER_TIMEOUT_MARGIN

if TYPE_CHECKING:
    from airflow.sdk import Context

# A daily fleet: a run still not through after a day has a stuck run ahead of it (the log says
# which), and the next day's run is due.
DEFAULT_TURN_TIMEOUT = timedelta(days=1)
# Looking more than once a second only loads the API server.
MIN_POLL_SECONDS = 1.0


class FleetWaitTurnSensor(BaseSensorOperator):
    """Wait, deferred, until no other run of this DAG is on the fleet or ahead of this one.

    The decision is :func:`operators.fleet_turn.decide_go`, made in the worker (the task is then
    ``running``, which is what makes two runs' decisions exclusive: see
    :mod:`operators.fleet_turn`). When the run may not go, the task defers to
    :class:`~operators.fleet_turn_triggers.FleetTurnTrigger`, which polls every
    ``poke_interval`` s until nobody is ahead, then checks again here. It never waits in the
    worker: a run sitting in ``running`` would keep every other run from going.

    Each look logs who the run waits for and why. Past ``timeout`` seconds (counted from the
    try's first look, across its deferrals) it fails with :class:`AirflowSensorTimeout`, naming
    the runs still ahead; a failed read of the Airflow API is a :class:`FleetError`, to which the
    task's retries apply. Returns nothing.

    :param poke_interval: seconds between two looks while deferred
    :param timeout: seconds this run may wait for its turn (default: a day)
    """

    ui_color = "#7a5c99"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        poke_interval: float = 30,
        timeout: float = DEFAULT_TURN_TIMEOUT.total_seconds(),
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        # Swappable for tests; the Task SDK's calls otherwise.
        self.reader: TurnReader = SdkTurnReader()
        self.clock = utcnow

    def execute(self, context: Context) -> None:
        deadline = self.clock() + timedelta(seconds=self.timeout)
        self._take_turn(context, deadline.isoformat())

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> None:
        event = GATE_OUTCOME.check(event, "waiting for the run's turn")
        self._take_turn(context, event["deadline"])

    def poke(self, context: Context) -> bool:
        """One look, as :meth:`execute` makes it (the base class's poke loop is never used)."""
        ti = context["ti"]
        view = read_turn(self.reader, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id)
        return decide_go(view).go

    def _take_turn(self, context: Context, deadline: str) -> None:
        ti = context["ti"]
        view = read_turn(self.reader, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id)
        turn = decide_go(view)
        if turn.go:
            # Return at once: until its `success` is committed this task stays `running`, which
            # every other run's check sees (operators.fleet_turn: why that makes it exclusive).
            self.log.info(
                "Run %s takes its turn on the fleet: no other run holds it or goes first", ti.run_id
            )
            return
        self.log.info("Run %s waits for its turn on the fleet: %s", ti.run_id, turn.describe())
        remaining = (datetime.fromisoformat(deadline) - self.clock()).total_seconds()
        if remaining <= 0:
            raise AirflowSensorTimeout(late_message(ti.run_id, deadline, turn.describe()))
        # Always deferred: a run that waited in the worker would sit `running`, keeping every
        # other run from going.
        self.defer(
            trigger=FleetTurnTrigger.until(
                ti,
                task_id=ti.task_id,
                deadline=deadline,
                remaining=remaining,
                poll_interval=max(float(self.poke_interval), MIN_POLL_SECONDS),
            ),
            method_name="execute_complete",
            # Airflow 3.3 does not apply execution_timeout to a deferred task: bound it here.
            timeout=timedelta(seconds=remaining + DEFER_TIMEOUT_MARGIN),
        )
