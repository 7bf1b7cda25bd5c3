"""The wait for a run's turn on the fleet, in the triggerer (see :mod:`operators.fleet_turn`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import AirflowSensorTimeout

from operators.fleet_turn import (
    SdkTurnReader,
    Turn,
    TurnReader,
    TurnView,
    decide_gate,
    decide_rejoin,
    read_turn,
)
from operators.fleet_wait import SUCCESS, TIMEOUT, EventOutcome, FleetPollTrigger, utcnow

# What a poll asks (operators.fleet_turn): may ``wait_turn`` look again in the worker (``gate``),
# or may a cleared run's step act (``rejoin``)?
GATE = "gate"
REJOIN = "rejoin"
RULES: dict[str, Callable[[TurnView], Turn]] = {GATE: decide_gate, REJOIN: decide_rejoin}


def late_message(run_id: str, deadline: str, ahead: str) -> str:
    return f"run {run_id} did not get its turn on the fleet by {deadline}; still ahead: {ahead}"


# The turn trigger's messages say it all: any end but success is a FleetError (the task's retries
# apply), but for wait_turn's own timeout: the message alone, as a sensor's timeout.
REJOIN_OUTCOME = EventOutcome(messages={}, otherwise="{what}: {message}")
GATE_OUTCOME = EventOutcome(
    errors={TIMEOUT: AirflowSensorTimeout}, messages={TIMEOUT: "{message}"}, otherwise="{what}: {message}"
)


class FleetTurnTrigger(FleetPollTrigger):
    """Poll every ``waiter_delay`` s until ``rule`` lets the run go: with ``gate`` (``wait_turn``),
    until no active run holds the fleet and none that sorts before this one waits for it; with
    ``rejoin`` (a step of a cleared run), until no other run holds the fleet or checks its turn.
    Then the task resumes and checks again in the worker.

    Each poll is one ``get_task_states`` call for every run's ``task_id`` and a few
    ``get_dr_count`` calls, and logs who this run waits for and why. It only reads, so a
    triggerer that restarts and runs it again loses nothing. It ends with a ``timeout`` event
    past ``deadline`` (or after ``waiter_max_attempts`` polls), naming the runs still ahead;
    the events carry ``deadline`` back, so that the task's next deferral keeps the same bound.

    :param dag_id: the DAG whose runs share the fleet
    :param run_id: this run
    :param task_id: the turn-taking task, the same in every run (``wait_turn``)
    :param deadline: ISO-8601 time (with offset) after which the wait gives up
    :param rule: ``gate`` or ``rejoin`` (:data:`RULES`)
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

    @classmethod
    def until(
        cls, ti: Any, *, task_id: str, deadline: str, remaining: float, poll_interval: float, **kwargs: Any
    ) -> FleetTurnTrigger:
        """The wait of ``ti``'s run for ``remaining`` seconds, to ``deadline``: one poll past it."""
        return cls(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=task_id,
            deadline=deadline,
            waiter_delay=poll_interval,
            waiter_max_attempts=math.ceil(remaining / poll_interval) + 1,
            **kwargs,
        )

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
