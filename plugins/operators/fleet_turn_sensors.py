"""Waiting for a run's turn on the fleet (the rules: :mod:`operators.fleet_turn`).

- :class:`FleetTurnTrigger`: the wait in the triggerer, for either of the two below;
- :class:`FleetWaitTurnSensor`: ``wait_turn``, a run's first task, which takes the fleet;
- :class:`FleetTurnGuard`: a step of a cleared run makes sure the fleet is its run's again before
  it acts on a VM. A Clear re-opens an ended run and may leave ``wait_turn`` out (a "clear
  failed", the signer's pair alone) while another run took its turn meanwhile. A run never
  cleared makes no call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowSensorTimeout, BaseSensorOperator

from operators.fleet_aws import FleetError
from operators.fleet_turn import (
    SdkTurnReader,
    Turn,
    TurnReader,
    TurnView,
    decide_gate,
    decide_go,
    decide_rejoin,
    read_turn,
)
from operators.fleet_wait import (
    DEFER_TIMEOUT_MARGIN,
    SUCCESS,
    TIMEOUT,
    EventOutcome,
    FleetDeferring,
    FleetPollTrigger,
    utcnow,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

# What a poll asks (operators.fleet_turn): may ``wait_turn`` look again in the worker (``gate``),
# or may a cleared run's step act (``rejoin``)?
GATE = "gate"
REJOIN = "rejoin"
RULES: dict[str, Callable[[TurnView], Turn]] = {GATE: decide_gate, REJOIN: decide_rejoin}


# A daily fleet: a run still not through after a day has a stuck run ahead of it (the log says
# which), and the next day's run is due.
DEFAULT_TURN_TIMEOUT = timedelta(days=1)
TURN_GUARD_TIMEOUT = DEFAULT_TURN_TIMEOUT
DEFAULT_TURN_POLL_SECONDS = 30.0
# Looking more than once a second only loads the API server.
MIN_POLL_SECONDS = 1.0


def late_message(run_id: str, deadline: str, ahead: str) -> str:
    return f"run {run_id} did not get its turn on the fleet by {deadline}; still ahead: {ahead}"


# The turn trigger's messages say it all: any end but success is a FleetError (the task's retries
# apply), but for wait_turn's own timeout: the message alone, as a sensor's timeout.
REJOIN_OUTCOME = EventOutcome(messages={}, otherwise="{what}: {message}")
GATE_OUTCOME = EventOutcome(
    errors={TIMEOUT: AirflowSensorTimeout}, messages={TIMEOUT: "{message}"}, otherwise="{what}: {message}"
)


class FleetTurnTrigger(FleetPollTrigger):
    """Poll until ``rule`` (``gate`` for ``wait_turn``, ``rejoin`` for a cleared run's step) lets
    the run go; the task then checks again in the worker. Each poll only reads, and logs who the
    run waits for. Past ``deadline`` it ends with a ``timeout`` event naming the runs ahead; every
    event carries ``deadline`` back, so that the task's next deferral keeps the same bound.

    :param task_id: the turn-taking task, the same in every run (``wait_turn``)
    :param deadline: ISO-8601 time (with offset) after which the wait gives up
    """

    serialized_fields = ("dag_id", "run_id", "task_id", "deadline", "rule")

    def __init__(
        self,
        *,
        dag_id: str,
        run_id: str,
        task_id: str,
        deadline: str,
        rule: str = GATE,
        reader: TurnReader | None = None,
        clock: Callable[[], datetime] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("aws_conn_id", None)  # no AWS here: the Airflow API, through the Task SDK
        super().__init__(**kwargs)
        self.dag_id = dag_id
        self.run_id = run_id
        self.task_id = task_id
        self.deadline = deadline
        if rule not in RULES:
            raise ValueError(f"rule must be one of {sorted(RULES)}, got {rule!r}")
        self.rule = rule
        self._deadline = datetime.fromisoformat(deadline)
        if self._deadline.tzinfo is None:
            raise ValueError(f"deadline must carry its UTC offset, got {deadline!r}")
        # The Task SDK's reads and the time, unless a task that polls here passes its own; not
        # serialized.
        self.reader: TurnReader = reader or SdkTurnReader()
        self.clock = clock or utcnow
        self._last: Turn | None = None

    def poll_once(self) -> dict[str, Any] | None:
        view = read_turn(self.reader, dag_id=self.dag_id, task_id=self.task_id, run_id=self.run_id)
        turn = self._last = RULES[self.rule](view)
        if turn.go:
            self.log.info("Run %s: nobody ahead any more; checking again in the worker", self.run_id)
            return {"status": SUCCESS, "message": "nobody ahead", "deadline": self.deadline}
        self.log.info("Run %s waits for its turn on the fleet: %s", self.run_id, turn.describe())
        if self.clock() >= self._deadline:
            return self._timeout_event()
        return None

    def timeout_message(self) -> str:
        return late_message(
            self.run_id, self.deadline, self._last.describe() if self._last else "not looked yet"
        )

    def _timeout_event(self) -> dict[str, Any]:
        return {"status": TIMEOUT, "message": self.timeout_message(), "deadline": self.deadline}


def turn_wait(
    ti: Any,
    *,
    task_id: str,
    deadline: str,
    turn: Turn,
    now: datetime,
    late: type[Exception],
    poll_interval: float,
    **kwargs: Any,
) -> tuple[FleetTurnTrigger, timedelta]:
    """The wait of ``ti``'s run until ``deadline`` (one poll past it) and its deferral's timeout;
    ``late`` when the deadline has passed. Airflow 3.3 does not apply execution_timeout to a
    deferred task: the timeout bounds it."""
    remaining = (datetime.fromisoformat(deadline) - now).total_seconds()
    if remaining <= 0:
        raise late(late_message(ti.run_id, deadline, turn.describe()))
    trigger = FleetTurnTrigger(
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=task_id,
        deadline=deadline,
        waiter_delay=poll_interval,
        waiter_max_attempts=math.ceil(remaining / poll_interval) + 1,
        **kwargs,
    )
    return trigger, timedelta(seconds=remaining + DEFER_TIMEOUT_MARGIN)


class FleetWaitTurnSensor(BaseSensorOperator):
    """Wait, always deferred, until no other run of this DAG is on the fleet or ahead of this one.

    :func:`operators.fleet_turn.decide_go` decides in the worker; otherwise the task defers to
    :class:`FleetTurnTrigger` and checks again after it. Past
    ``timeout`` (from the try's first look, across deferrals) it raises
    :class:`AirflowSensorTimeout` naming the runs still ahead.

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
        # Always deferred: a run that waited in the worker would sit `running`, keeping every
        # other run from going.
        trigger, timeout = turn_wait(
            ti,
            task_id=ti.task_id,
            deadline=deadline,
            turn=turn,
            now=self.clock(),
            late=AirflowSensorTimeout,
            poll_interval=max(float(self.poke_interval), MIN_POLL_SECONDS),
        )
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timeout)


class FleetTurnGuard(FleetDeferring):
    """Mixin (first among the bases): ``execute`` calls :meth:`hold_turn` first, and
    :meth:`resume_after_turn` calls ``execute`` again after a deferred wait.

    :param turn_task_id: the DAG's turn-taking task (``wait_turn``); ``None``: no guard
    :param turn_poll_interval: seconds between two looks while waiting
    """

    def __init__(
        self,
        *,
        turn_task_id: str | None = None,
        turn_poll_interval: float = DEFAULT_TURN_POLL_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.turn_task_id = turn_task_id
        self.turn_poll_interval = max(float(turn_poll_interval), MIN_POLL_SECONDS)
        # Swappable for tests; the Task SDK's calls otherwise.
        self.turn_reader: TurnReader = SdkTurnReader()
        self.turn_clock = utcnow
        # Kept across deferrals, so that waiting again does not push the bound back.
        self._turn_deadline: str | None = None

    def hold_turn(self, context: Context) -> None:
        """Return when this run may act on the fleet; defer (or block) until then."""
        if not self.turn_task_id or not getattr(context.get("dag_run"), "clear_number", 0):
            return
        ti = context["ti"]
        if self._turn_deadline is None:
            self._turn_deadline = (self.turn_clock() + TURN_GUARD_TIMEOUT).isoformat()
        deadline = self._turn_deadline
        while True:
            view = read_turn(self.turn_reader, dag_id=ti.dag_id, task_id=self.turn_task_id, run_id=ti.run_id)
            turn = decide_rejoin(view)
            if turn.go:
                self.log.info(  # type: ignore[attr-defined]
                    "Run %s was cleared; the fleet is still its own: no other run holds it", ti.run_id
                )
                return
            self.log.info(  # type: ignore[attr-defined]
                "Run %s was cleared after it took its turn on the fleet, and another run may be on it"
                " now; waiting: %s",
                ti.run_id,
                turn.describe(),
            )
            trigger, timeout = turn_wait(
                ti,
                task_id=self.turn_task_id,
                deadline=deadline,
                turn=turn,
                now=self.turn_clock(),
                late=FleetError,
                poll_interval=self.turn_poll_interval,
                rule=REJOIN,
                reader=self.turn_reader,
                clock=self.turn_clock,
            )
            event = self.defer_or_wait(trigger, method_name="resume_after_turn", timeout=timeout)
            self._check_turn_event(event)

    def resume_after_turn(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Re-entry after the deferred wait: look again in the worker, then the step itself."""
        self._check_turn_event(event)
        return self.execute(context)  # type: ignore[attr-defined]

    def _check_turn_event(self, event: dict[str, Any] | None) -> None:
        event = REJOIN_OUTCOME.check(event, "waiting for the run's turn on the fleet")
        self._turn_deadline = event["deadline"]
