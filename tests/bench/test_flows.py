"""The in-process task runner: slots held, deferral to the triggerer, time asleep in a slot."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from airflow.sdk.exceptions import TaskDeferred
from airflow.triggers.base import TriggerEvent

from bench.flows import FlowRecorder, FlowSpec, SlotMeter, Triggerer, run_task


class Trigger:
    def __init__(self, payload):
        self.payload = payload

    async def run(self):
        yield TriggerEvent(self.payload)


class DeferringOperator:
    """Defers once; its resume method returns what the trigger sent."""

    def execute(self, context):
        raise TaskDeferred(
            trigger=Trigger({"status": "success", "n": 3}), method_name="done", timeout=timedelta(seconds=5)
        )

    def resume_execution(self, next_method, next_kwargs, context):
        return getattr(self, next_method)(context, **next_kwargs)

    def done(self, context, event):
        return event["n"]


class SleepingOperator:
    def execute(self, context):
        time.sleep(0.2)
        return "slept"


@pytest.fixture
def triggerer():
    started = Triggerer()
    yield started
    started.close()


def test_a_deferred_task_holds_a_slot_only_while_its_own_code_runs(triggerer):
    meter, recorder = SlotMeter(), FlowRecorder()

    assert run_task(DeferringOperator(), "wait", meter=meter, triggerer=triggerer, recorder=recorder) == 3

    assert meter.peak == 1 and meter.held_now == 0
    assert meter.slot_seconds < 0.5
    assert triggerer.triggers_run == 1 and "wait" in triggerer.deferred_seconds
    assert [(step.step, step.error) for step in recorder.steps] == [("wait", None)]


def test_sleeping_in_a_slot_counts_as_waiting_there(triggerer):
    meter = SlotMeter()
    real_sleep = time.sleep
    time.sleep = meter.counting_sleep(real_sleep)
    try:
        run_task(SleepingOperator(), "poke", meter=meter, triggerer=triggerer, recorder=FlowRecorder())
        time.sleep(0.05)  # outside any slot: not counted
    finally:
        time.sleep = real_sleep

    assert meter.waiting_seconds == pytest.approx(0.2, abs=0.1)
    assert set(meter.waiting_by_step) == {"poke"}
    assert meter.slot_seconds >= meter.waiting_seconds


def test_a_failing_task_is_recorded_and_raises(triggerer):
    class Failing:
        def execute(self, context):
            raise RuntimeError("no capacity")

    recorder = FlowRecorder()
    with pytest.raises(RuntimeError, match="no capacity"):
        run_task(Failing(), "start", meter=SlotMeter(), triggerer=triggerer, recorder=recorder)
    assert recorder.steps[0].error == "RuntimeError: no capacity"


def test_a_flow_spec_is_checked():
    with pytest.raises(ValueError, match="flow must be 'ours' or 'stock'"):
        FlowSpec(flow="mine", signer="i-1", workers=["i-2"], scripts={"i-2": "true"}, run_date="2026-11-23")
    with pytest.raises(ValueError, match="no script for worker"):
        FlowSpec(flow="ours", signer="i-1", workers=["i-2"], scripts={}, run_date="2026-11-23")
