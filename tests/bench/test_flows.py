"""The in-process task runner: slots held, deferral to the trigger, time asleep in a slot; the DAG's tasks."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from airflow.sdk.exceptions import TaskDeferred
from airflow.triggers.base import TriggerEvent
from fleet_dag.config import parse_config

from bench import fleets
from bench.flows import ROLE, DagFlow, FlowSpec, SlotMeter, build, run_task


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


def test_a_deferred_task_holds_a_slot_only_while_its_own_code_runs():
    meter = SlotMeter()

    assert run_task(DeferringOperator(), "wait", meter) == 3

    assert meter.peak == 1 and meter.held_now == 0
    assert meter.slot_seconds < 0.5
    assert list(meter.deferred_by_step) == ["wait"]


def test_sleeping_in_a_slot_counts_as_waiting_there():
    meter = SlotMeter()
    real_sleep = time.sleep
    time.sleep = meter.counting_sleep(real_sleep)
    try:
        run_task(SleepingOperator(), "poke", meter)
        time.sleep(0.05)  # outside any slot: not counted
    finally:
        time.sleep = real_sleep

    assert meter.waiting_seconds == pytest.approx(0.2, abs=0.1)
    assert meter.slot_seconds >= meter.waiting_seconds


def test_a_failing_task_raises_and_frees_its_slot():
    class Failing:
        def execute(self, context):
            raise RuntimeError("no capacity")

    meter = SlotMeter()
    with pytest.raises(RuntimeError, match="no capacity"):
        run_task(Failing(), "start", meter)
    assert meter.held_now == 0 and "start" in meter.by_step


def spec(flow: str, workers=("i-0bbbbbbbbbbbbbbbb", "i-0cccccccccccccccc"), **kwargs) -> FlowSpec:
    base = fleets.fleet_config(len(workers))
    fleet = fleets.for_flow(
        base, "i-0aaaaaaaaaaaaaaaa", list(workers), one_role=ROLE if flow == "ours" else None, **kwargs
    )
    return FlowSpec(flow, fleet, list(workers), "2026-11-23")


def test_ours_is_fleet_daily_for_one_role_whose_start_is_given_every_worker():
    dag = build(spec("ours"))

    assert dag.dag_id == "fleet_daily"
    assert dag.get_task(f"{ROLE}.start").instance_ids == ["i-0bbbbbbbbbbbbbbbb", "i-0cccccccccccccccc"]
    assert dag.get_task("start_signer").instance_ids == ["i-0aaaaaaaaaaaaaaaa"]


def test_the_tasks_render_the_dags_own_agent_command_for_the_run_date():
    flow = DagFlow(build(spec("ours")), "2026-11-23", SlotMeter())
    task = flow.dag.get_task(f"{ROLE}.run_agent")
    flow.xcoms[f"{ROLE}.start", "return_value"] = ["i-0bbbbbbbbbbbbbbbb"]

    task.render_template_fields(flow.context(task.task_id))

    script = task.parameters["commands"][0]
    assert "--date '2026-11-23'" in script and f"--role {ROLE}" in script
    assert "{{" not in script and "{%" not in script and "--force" not in script
    assert script.endswith("FLEET_SPEC")
    assert task.instance_ids == ["i-0bbbbbbbbbbbbbbbb"]  # start's XCom


def test_the_stand_in_is_the_commands_program_and_stock_has_a_chain_per_worker():
    stock = spec("stock", standin_seconds=5)
    config = parse_config(stock.fleet)

    assert config.agent.command[:2] == ["bash", "-c"] and "standin" in config.agent.command[2]
    assert {"w001.run_agent", "w002.wait_stopped", "start_signer"} <= set(build(stock).task_ids)


def test_a_flow_spec_is_checked():
    with pytest.raises(ValueError, match="flow must be 'ours' or 'stock'"):
        FlowSpec("mine", {}, ["i-2"], "2026-11-23")
    with pytest.raises(ValueError, match="at least one worker"):
        FlowSpec("ours", {}, [], "2026-11-23")
