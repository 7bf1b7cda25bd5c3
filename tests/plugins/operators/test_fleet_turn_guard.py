"""Tests for operators.fleet_turn_sensors: a cleared run's step waits until the fleet is its run's."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from airflow.sdk import BaseOperator
from fleet_operator_testing import messages
from operators.fleet_aws import FleetError
from operators.fleet_ec2_operators import FleetStartInstancesOperator, FleetStopInstancesOperator
from operators.fleet_role_operators import FleetRunAgentOperator
from operators.fleet_sensors import FleetInstanceStateSensor
from operators.fleet_turn_sensors import REJOIN, FleetTurnGuard, FleetTurnTrigger
from operators.fleet_wait import SUCCESS, TIMEOUT

NOW = datetime(2026, 11, 23, 0, 0, 5, tzinfo=UTC)
DAG = "fleet_daily"
ME = "scheduled__2026-11-20T00:00:00+00:00"
OTHER = "backfill__2026-11-21T00:00:00+00:00"
HELD = {OTHER: "success"}
CHECKING = {OTHER: "running"}
WAITING = {OTHER: "deferred"}


class Reader:
    """Answers each look with the next states of the others (the last repeats); all active."""

    def __init__(self, *looks: dict[str, str]) -> None:
        self.looks, self.calls = list(looks), 0

    def task_states(self, dag_id, task_id):
        assert (dag_id, task_id) == (DAG, "wait_turn")
        look = self.looks[min(self.calls, len(self.looks) - 1)]
        self.calls += 1
        return {ME: "success", **look}

    def active_count(self, dag_id, run_ids):
        return len(run_ids)


class Untouchable:
    def task_states(self, dag_id, task_id):
        raise AssertionError("a run never cleared must not ask anything")

    active_count = task_states


class Step(FleetTurnGuard, BaseOperator):
    """The smallest guarded step: it records that it acted."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.acted = 0

    def execute(self, context):
        self.hold_turn(context)
        self.acted += 1
        return "acted"


def _step(reader, *, deferrable=True, **kwargs) -> Step:
    kwargs.setdefault("turn_task_id", "wait_turn")
    step = Step(task_id="start", turn_poll_interval=1, **kwargs)
    step.deferrable = deferrable
    step.turn_reader = reader
    step.turn_clock = lambda: NOW
    return step


def _context(clear_number: int) -> dict:
    return {
        "ti": SimpleNamespace(dag_id=DAG, run_id=ME, task_id="start"),
        "dag_run": SimpleNamespace(run_id=ME, clear_number=clear_number),
    }


class TestFleetTurnGuard:
    def test_a_run_never_cleared_acts_without_asking(self):
        step = _step(Untouchable())

        assert step.execute(_context(clear_number=0)) == "acted"

    def test_without_a_turn_task_there_is_no_guard(self):
        step = _step(Untouchable(), turn_task_id=None)

        assert step.execute(_context(clear_number=3)) == "acted"

    @pytest.mark.parametrize("others", [{}, WAITING, {OTHER: "success", "manual__x": "failed"}])
    def test_a_cleared_run_acts_when_no_other_run_holds_the_fleet_or_checks(self, others, task_log):
        reader = Reader(others)
        if others.get(OTHER) == "success":
            reader.active_count = lambda dag_id, run_ids: 0  # that holder's run has ended

        assert _step(reader).execute(_context(clear_number=1)) == "acted"
        assert reader.calls == 1
        assert f"Run {ME} was cleared; the fleet is still its own: no other run holds it" in messages(
            task_log
        )

    @pytest.mark.parametrize(("others", "why"), [(HELD, "holds the fleet"), (CHECKING, "checks its turn")])
    def test_a_cleared_run_waits_deferred_while_another_run_holds_the_fleet_or_checks(
        self, others, why, task_log
    ):
        step = _step(Reader(others))

        with pytest.raises(TaskDeferred) as deferred:
            step.execute(_context(clear_number=2))

        assert step.acted == 0
        assert deferred.value.method_name == "resume_after_turn"
        assert deferred.value.timeout == timedelta(days=1, seconds=60)
        trigger = deferred.value.trigger
        assert isinstance(trigger, FleetTurnTrigger)
        assert (trigger.rule, trigger.task_id, trigger.run_id) == (REJOIN, "wait_turn", ME)
        assert (trigger.deadline, trigger.waiter_delay) == ("2026-11-24T00:00:05+00:00", 1.0)
        logged = "\n".join(messages(task_log))
        assert f"Run {ME} was cleared after it took its turn on the fleet" in logged
        assert f"{OTHER} ({why}" in logged

    def test_after_the_wait_it_looks_again_in_the_worker_and_keeps_the_bound(self):
        step = _step(Reader(CHECKING))
        event = {"status": SUCCESS, "message": "nobody ahead", "deadline": "2026-11-23T06:00:00+00:00"}

        # Someone started checking again in between: wait again, with the same deadline.
        with pytest.raises(TaskDeferred) as deferred:
            step.resume_after_turn(_context(clear_number=1), event)
        assert deferred.value.trigger.deadline == "2026-11-23T06:00:00+00:00"

        step.turn_reader = Reader({})
        assert step.resume_after_turn(_context(clear_number=1), event) == "acted"

    def test_a_timed_out_wait_fails_naming_who_is_still_ahead(self):
        step = _step(Reader(HELD))
        event = {"status": TIMEOUT, "message": f"run {ME} did not get its turn ...; still ahead: {OTHER}"}

        with pytest.raises(
            FleetError, match=f"waiting for the run's turn on the fleet: .*still ahead: {re.escape(OTHER)}"
        ):
            step.resume_after_turn(_context(clear_number=1), event)
        assert step.acted == 0

    def test_past_its_deadline_it_fails_at_once(self):
        step = _step(Reader(HELD))
        step._turn_deadline = (NOW - timedelta(seconds=1)).isoformat()

        with pytest.raises(
            FleetError, match=f"did not get its turn on the fleet by .*still ahead: {re.escape(OTHER)}"
        ):
            step.execute(_context(clear_number=1))

    def test_not_deferrable_it_waits_in_the_worker_then_acts(self, task_log):
        reader = Reader(HELD, HELD, {})
        step = _step(reader, deferrable=False)

        assert step.execute(_context(clear_number=1)) == "acted"
        # The worker's look, the wait's two polls, and the worker's look again before acting.
        assert reader.calls == 4
        assert sum("was cleared after it took its turn" in m for m in messages(task_log)) == 1


# The operators that act on a VM: a cleared run's step waits before its first AWS call.
GUARDED = [
    pytest.param(lambda **kw: FleetStartInstancesOperator(instance_ids=["i-1"], **kw), id="start"),
    pytest.param(lambda **kw: FleetStopInstancesOperator(instance_ids=["i-1"], **kw), id="stop_signer"),
    pytest.param(
        lambda **kw: FleetRunAgentOperator(
            instance_ids=["i-1"], run_date="2026-11-20", parameters={"commands": ["true"]}, **kw
        ),
        id="run_agent",
    ),
    pytest.param(
        lambda **kw: FleetInstanceStateSensor(instance_ids=["i-1"], target_state="stopped", **kw),
        id="wait_stopped",
    ),
]


@pytest.mark.parametrize("make", GUARDED)
def test_each_step_that_acts_on_a_vm_waits_before_its_first_aws_call(make):
    step = make(
        task_id="step", turn_task_id="wait_turn", deferrable=True, aws_conn_id=None, region_name="us-east-1"
    )
    step.turn_reader = Reader(HELD)
    step.turn_clock = lambda: NOW

    # No AWS here at all: a call would fail for want of credentials, not defer.
    with pytest.raises(TaskDeferred) as deferred:
        step.execute(_context(clear_number=1))

    assert deferred.value.method_name == "resume_after_turn"
    assert deferred.value.trigger.rule == REJOIN
