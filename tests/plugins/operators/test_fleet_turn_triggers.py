"""Tests for operators.fleet_turn_sensors: the turn trigger and ``wait_turn``."""

from __future__ import annotations

import importlib
import json
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout, TaskDeferred
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason
from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
from airflow.sdk.execution_time.comms import ErrorResponse
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
from fleet_operator_testing import messages
from operators.fleet_aws import FleetError
from operators.fleet_turn import SdkTurnReader
from operators.fleet_turn_sensors import DEFAULT_TURN_TIMEOUT, REJOIN, FleetTurnTrigger, FleetWaitTurnSensor
from operators.fleet_wait import ERROR, SUCCESS, TIMEOUT

NOW = datetime(2026, 11, 23, 0, 0, 5, tzinfo=UTC)
DAG = "fleet_daily"
ME = "backfill__2026-11-21T00:00:00+00:00"
EARLIER = "backfill__2026-11-20T00:00:00+00:00"
LATER = "backfill__2026-11-22T00:00:00+00:00"


class ScriptedReader:
    """Answers each look with the next ``(states, active runs)``; the last one repeats."""

    def __init__(self, *looks: tuple[dict[str, str | None], set[str]]) -> None:
        self.looks = list(looks)
        self.calls = 0
        self.look = looks[0]

    def task_states(self, dag_id, task_id):
        assert (dag_id, task_id) == (DAG, "wait_turn")
        self.look = self.looks[min(self.calls, len(self.looks) - 1)]
        self.calls += 1
        return {ME: "running", **self.look[0]}

    def active_count(self, dag_id, run_ids):
        return len(set(run_ids) & self.look[1])


HELD = ({EARLIER: "success"}, {EARLIER})
FREE = ({EARLIER: "success"}, set())  # the holder's run has ended
LATER_CHECKING = ({LATER: "running"}, {LATER})


def _trigger(reader, deadline=NOW + timedelta(hours=1), **kwargs) -> FleetTurnTrigger:
    kwargs.setdefault("waiter_delay", 0)
    kwargs.setdefault("waiter_max_attempts", 5)
    trigger = FleetTurnTrigger(
        dag_id=DAG, run_id=ME, task_id="wait_turn", deadline=deadline.isoformat(), **kwargs
    )
    trigger.reader = reader
    trigger.clock = lambda: NOW
    return trigger


async def _run(trigger) -> dict:
    events = [event async for event in trigger.run()]
    assert len(events) == 1
    return events[0].payload


class TestFleetTurnTrigger:
    def test_serializes_to_json_and_rebuilds_from_its_classpath(self):
        trigger = _trigger(ScriptedReader(FREE), waiter_delay=2, waiter_max_attempts=7)

        classpath, kwargs = trigger.serialize()

        assert classpath == "operators.fleet_turn_sensors.FleetTurnTrigger"
        assert json.loads(json.dumps(kwargs)) == kwargs
        module, name = classpath.rsplit(".", 1)
        rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
        assert rebuilt.serialize() == trigger.serialize()
        assert (kwargs["dag_id"], kwargs["run_id"], kwargs["task_id"]) == (DAG, ME, "wait_turn")
        assert (kwargs["deadline"], kwargs["waiter_delay"], kwargs["waiter_max_attempts"]) == (
            "2026-11-23T01:00:05+00:00",
            2,
            7,
        )

    def test_a_deadline_without_its_offset_is_refused(self):
        with pytest.raises(ValueError, match="UTC offset"):
            FleetTurnTrigger(dag_id=DAG, run_id=ME, task_id="wait_turn", deadline="2026-11-23T01:00:00")

    async def test_waits_while_a_run_holds_the_fleet_and_says_who_then_lets_the_task_look(self, task_log):
        reader = ScriptedReader(HELD, HELD, FREE)

        event = await _run(_trigger(reader))

        assert event == {
            "status": SUCCESS,
            "message": "nobody ahead",
            "deadline": "2026-11-23T01:00:05+00:00",
        }
        assert reader.calls == 3
        waits = [m for m in messages(task_log) if "waits for its turn" in m]
        held = f"{EARLIER} (holds the fleet: its wait_turn succeeded and the run is still going)"
        assert waits == [f"Run {ME} waits for its turn on the fleet: {held}"] * 2

    async def test_a_later_run_checking_does_not_hold_the_gate(self):
        # Only the worker's check waits for it (operators.fleet_turn: the gate is about when to look).
        assert (await _run(_trigger(ScriptedReader(LATER_CHECKING))))["status"] == SUCCESS

    async def test_for_a_cleared_runs_step_it_waits_for_a_run_checking_and_for_holders(self, task_log):
        reader = ScriptedReader(LATER_CHECKING, HELD, FREE)

        event = await _run(_trigger(reader, rule=REJOIN))

        assert event["status"] == SUCCESS and reader.calls == 3
        assert FleetTurnTrigger(**_trigger(reader, rule=REJOIN).serialize()[1]).rule == REJOIN

    def test_an_unknown_rule_is_refused_naming_it(self):
        with pytest.raises(ValueError, match="rule must be one of \\['gate', 'rejoin'\\], got 'gat'"):
            _trigger(ScriptedReader(FREE), rule="gat")

    async def test_past_the_deadline_it_times_out_naming_who_is_still_ahead(self):
        event = await _run(_trigger(ScriptedReader(HELD), deadline=NOW - timedelta(seconds=1)))

        assert event["status"] == TIMEOUT
        assert event["message"] == (
            f"run {ME} did not get its turn on the fleet by 2026-11-23T00:00:04+00:00; still ahead: "
            f"{EARLIER} (holds the fleet: its wait_turn succeeded and the run is still going)"
        )

    async def test_its_polls_are_bounded_too(self):
        event = await _run(_trigger(ScriptedReader(HELD), waiter_max_attempts=3))

        assert event["status"] == TIMEOUT and "still ahead: " + EARLIER in event["message"]

    async def test_it_only_reads_so_running_it_twice_gives_the_same_answer(self):
        # A restarted triggerer rebuilds it from serialize() and runs it again from the start.
        reader = ScriptedReader(HELD, FREE)
        trigger = _trigger(reader)
        first = await _run(trigger)
        reader.calls = 0
        rebuilt = FleetTurnTrigger(**trigger.serialize()[1])
        rebuilt.reader, rebuilt.clock = reader, trigger.clock

        assert await _run(rebuilt) == first

    async def test_an_api_error_is_an_error_event(self, monkeypatch):
        def broken(**kwargs):
            raise AirflowRuntimeError(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"status": 503}))

        monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(broken))
        trigger = _trigger(SdkTurnReader())

        event = await _run(trigger)

        assert event["status"] == ERROR
        assert event["message"].startswith("could not read the other runs' turns: ")


class TestSdkTurnReader:
    def test_asks_the_task_sdk_for_every_runs_state_of_the_task_and_counts_active_runs(self, monkeypatch):
        calls = []

        def task_states(**kwargs):
            calls.append(("states", kwargs))
            return {ME: {"wait_turn": "running"}, EARLIER: {"wait_turn": "success"}}

        def dr_count(**kwargs):
            calls.append(("count", kwargs))
            return 1

        monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(task_states))
        monkeypatch.setattr(RuntimeTaskInstance, "get_dr_count", staticmethod(dr_count))
        reader = SdkTurnReader()

        assert reader.task_states(DAG, "wait_turn") == {ME: "running", EARLIER: "success"}
        assert reader.active_count(DAG, [EARLIER]) == 1
        # No run ids means no filter at all to the API: never ask that.
        assert reader.active_count(DAG, []) == 0
        assert calls == [
            ("states", {"dag_id": DAG, "task_ids": ["wait_turn"], "map_index": -1}),
            ("count", {"dag_id": DAG, "run_ids": [EARLIER], "states": ["queued", "running"]}),
        ]


# -- the sensor ------------------------------------------------------------------------------------


def _sensor(reader, **kwargs) -> FleetWaitTurnSensor:
    kwargs.setdefault("poke_interval", 2)
    kwargs.setdefault("timeout", 600)
    sensor = FleetWaitTurnSensor(task_id="wait_turn", **kwargs)
    sensor.reader = reader
    sensor.clock = lambda: NOW
    return sensor


@pytest.fixture
def context():
    return {"ti": SimpleNamespace(dag_id=DAG, run_id=ME, task_id="wait_turn")}


class TestFleetWaitTurnSensor:
    def test_alone_it_goes_at_once_in_the_worker(self, context, task_log):
        assert _sensor(ScriptedReader(FREE)).execute(context) is None

        assert f"Run {ME} takes its turn on the fleet: no other run holds it or goes first" in messages(
            task_log
        )

    def test_a_run_ahead_defers_it_to_the_trigger_with_the_wait_bound(self, context, task_log):
        sensor = _sensor(ScriptedReader(HELD), poke_interval=2, timeout=600)

        with pytest.raises(TaskDeferred) as deferred:
            sensor.execute(context)

        assert deferred.value.method_name == "execute_complete"
        assert deferred.value.timeout == timedelta(seconds=600 + 60)
        trigger = deferred.value.trigger
        assert isinstance(trigger, FleetTurnTrigger)
        assert trigger.serialize()[1] | {} == {
            "dag_id": DAG,
            "run_id": ME,
            "task_id": "wait_turn",
            "deadline": "2026-11-23T00:10:05+00:00",
            "rule": "gate",
            "waiter_delay": 2.0,
            "waiter_max_attempts": 301,
            "aws_conn_id": None,
            "region_name": None,
            "verify": None,
            "botocore_config": None,
        }
        assert any(
            f"waits for its turn on the fleet: {EARLIER} (holds the fleet" in m for m in messages(task_log)
        )

    def test_a_later_run_checking_right_now_sends_it_back_to_wait_with_the_same_deadline(self, context):
        sensor = _sensor(ScriptedReader(LATER_CHECKING))

        with pytest.raises(TaskDeferred) as deferred:
            sensor.execute_complete(context, {"status": SUCCESS, "deadline": "2026-11-23T00:01:05+00:00"})

        assert deferred.value.trigger.deadline == "2026-11-23T00:01:05+00:00"
        assert deferred.value.timeout == timedelta(seconds=60 + 60)

    def test_resumed_with_nobody_ahead_it_goes(self, context):
        event = {"status": SUCCESS, "deadline": "2026-11-23T00:01:05+00:00"}
        assert _sensor(ScriptedReader(FREE)).execute_complete(context, event) is None

    def test_still_blocked_past_the_deadline_is_a_sensor_timeout_naming_who(self, context):
        with pytest.raises(
            AirflowSensorTimeout,
            match=re.escape(f"by 2026-11-23T00:00:05+00:00; still ahead: {LATER} (checks its turn"),
        ):
            _sensor(ScriptedReader(LATER_CHECKING)).execute_complete(
                context, {"status": SUCCESS, "deadline": "2026-11-23T00:00:05+00:00"}
            )

    def test_the_triggers_timeout_is_a_sensor_timeout(self, context):
        with pytest.raises(AirflowSensorTimeout, match="still ahead: x"):
            _sensor(ScriptedReader(FREE)).execute_complete(
                context, {"status": TIMEOUT, "message": "still ahead: x"}
            )

    def test_the_deferrals_own_timeout_is_a_sensor_timeout(self, context):
        with pytest.raises(AirflowSensorTimeout):
            _sensor(ScriptedReader(FREE)).resume_execution(
                TRIGGER_FAIL_REPR, {"error": TriggerFailureReason.TRIGGER_TIMEOUT}, context
            )

    def test_an_error_event_is_a_fleet_error_so_that_retries_apply(self, context):
        with pytest.raises(FleetError, match="could not read"):
            _sensor(ScriptedReader(FREE)).execute_complete(
                context, {"status": ERROR, "message": "could not read"}
            )

    def test_waits_a_day_by_default(self):
        sensor = FleetWaitTurnSensor(task_id="wait_turn")
        assert sensor.timeout == DEFAULT_TURN_TIMEOUT.total_seconds() == 86400
        assert sensor.poke_interval == 30
