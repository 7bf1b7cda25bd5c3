"""The daily flow at operator level, ours and stock, run in one process like a worker and a triggerer
(``bench/method.md``, *Operator level*); :class:`SlotMeter` counts the worker slots held.

``python -m bench.flows SPEC OUT`` runs one flow in a process of its own, so that its peak resident
memory (``ru_maxrss``) is the flow's alone: the simulator, its moto server and the hosts live in the parent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from airflow_harness.in_process import TaskInstance, share_botocore_loader
from bench.metrics import step_of

# Past a deferral's own timeout, how long to wait for the trigger before giving up.
DEFERRAL_GRACE = 60.0
# The one role of ours: fleet_daily's steps of a role, in the order the batched flow runs them.
ROLE = "fleet"
OURS_STEPS = (
    "start_signer",
    *(f"{ROLE}.{step}" for step in ("start", "wait_running", "wait_ssm_online", "run_agent", "wait_stopped")),
)
STOCK_CHAIN = ("start", "run_agent", "wait_stopped")


@dataclass
class FlowSpec:
    """What a flow runs on (JSON-serializable: the parent process hands it to the child)."""

    flow: str  # "ours" | "stock"
    # The fleet config the flow's DAG is built from: ours, one role named ROLE; stock, a role per worker.
    fleet: dict[str, Any]
    workers: list[str]
    run_date: str
    stock_intervals: dict[str, float | None] = field(default_factory=dict)
    # True: only the poll-round probes, in a process of their own so that their clients do not count in
    # a flow's peak memory.
    probes_only: bool = False

    def __post_init__(self) -> None:
        if self.flow not in ("ours", "stock"):
            raise ValueError(f"flow must be 'ours' or 'stock', got {self.flow!r}")
        if not self.workers:
            raise ValueError("a flow needs at least one worker instance")


def _rounded(totals: dict[str, float]) -> dict[str, float]:
    return {step: round(seconds, 3) for step, seconds in sorted(totals.items())}


class SlotMeter:
    """Worker slots held: a task holds one while its own code runs, none while deferred."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._local = threading.local()
        self.held_now = self.peak = 0
        # Seconds held by step, of which asleep (a poke, a waiter, a loop); deferred (no slot) by step.
        self.slot_seconds = self.waiting_seconds = 0.0
        self.by_step: defaultdict[str, float] = defaultdict(float)
        self.deferred_by_step: defaultdict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def held(self, step: str) -> Generator[None]:
        began = self._clock()
        with self._lock:
            self.held_now += 1
            self.peak = max(self.peak, self.held_now)
        self._local.step = step
        try:
            yield
        finally:
            self._local.step = None
            spent = self._clock() - began
            with self._lock:
                self.held_now -= 1
                self.slot_seconds += spent
                self.by_step[step] += spent

    def counting_sleep(self, sleep: Callable[[float], None]) -> Callable[[float], None]:
        """``sleep``, counting the seconds a thread sleeps while it holds a slot."""

        def counted(seconds: float) -> None:
            step, began = getattr(self._local, "step", None), self._clock()
            try:
                sleep(seconds)
            finally:
                if step is not None:
                    slept = self._clock() - began
                    with self._lock:
                        self.waiting_seconds += slept

        return counted

    def deferred(self, deferral: Any, step: str) -> dict[str, Any]:
        """Run a deferral's trigger to its first event, holding no slot; the event's payload."""
        timeout = deferral.timeout
        if isinstance(timeout, timedelta):
            timeout = timeout.total_seconds()
        began = self._clock()
        try:
            limit = None if timeout is None else timeout + DEFERRAL_GRACE
            return asyncio.run(asyncio.wait_for(_first_event(deferral.trigger), limit))
        finally:
            with self._lock:
                self.deferred_by_step[step] += self._clock() - began

    def to_dict(self) -> dict[str, Any]:
        return {
            "peak": self.peak,
            "slot_seconds": round(self.slot_seconds, 3),
            "by_step": _rounded(self.by_step),
            "waiting_seconds": round(self.waiting_seconds, 3),
            "deferred_by_step": _rounded(self.deferred_by_step),
        }


async def _first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return event.payload
    raise RuntimeError(f"trigger {type(trigger).__name__} ended without an event")


def run_task(operator: Any, step: str, meter: SlotMeter, context: dict[str, Any] | None = None) -> Any:
    """Run one operator as Airflow would: execute, defer to the trigger, resume on the event."""
    from airflow.sdk.exceptions import TaskDeferred

    context = context or {}
    with meter.held(step):
        try:
            return operator.execute(context)
        except TaskDeferred as deferral:
            pending = deferral
    while True:
        event = meter.deferred(pending, step)
        with meter.held(step):
            try:
                kwargs = {**(pending.kwargs or {}), "event": event}
                return operator.resume_execution(pending.method_name, kwargs, context)
            except TaskDeferred as deferral:
                pending = deferral


class DagFlow:
    """Runs tasks of one DAG for one run date: rendered, executed, their results kept as XComs."""

    def __init__(self, dag: Any, run_date: str, meter: SlotMeter) -> None:
        import pendulum

        moment = pendulum.parse(run_date)
        self.dag, self.meter, self.xcoms = dag, meter, {}
        self.dag_run = SimpleNamespace(logical_date=moment, run_after=moment, clear_number=0, conf={})

    def context(self, task_id: str) -> dict[str, Any]:
        ti = TaskInstance(task_id, self.xcoms)
        return {"ti": ti, "task_instance": ti, "dag_run": self.dag_run, "params": {"force": False}}

    def run(self, task_id: str) -> None:
        task, context = self.dag.get_task(task_id), self.context(task_id)
        task.render_template_fields(context)
        self.xcoms[task_id, "return_value"] = run_task(task, step_of(task_id), self.meter, context)


def build(spec: FlowSpec) -> Any:
    """The flow's DAG: ``fleet_daily`` for ours (its start given every worker), the stock DAG for stock."""
    from fleet_dag.builder import build_dag
    from fleet_dag.config import parse_config

    from bench.stock_dag import StockIntervals, build_stock_dag

    config = parse_config(spec.fleet)
    if spec.flow == "stock":
        return build_stock_dag(config, intervals=StockIntervals(**spec.stock_intervals))
    dag = build_dag(config)
    dag.get_task(f"{ROLE}.start").instance_ids = list(spec.workers)
    return dag


def run_ours(spec: FlowSpec, flow: DagFlow) -> None:
    try:
        for task_id in OURS_STEPS:
            flow.run(task_id)
    finally:
        # The DAG's teardown: the signer is stopped whatever happened to the workers.
        flow.run("stop_signer")


def run_stock(spec: FlowSpec, flow: DagFlow) -> None:
    flow.run("start_signer")
    roles = [role["name"] for role in spec.fleet["roles"]]

    def chain(role: str) -> None:
        for step in STOCK_CHAIN:
            flow.run(f"{role}.{step}")

    # One thread per worker: every chain gets its worker slots at once, as with enough parallelism.
    with ThreadPoolExecutor(max_workers=len(roles), thread_name_prefix="stock") as pool:
        errors = [future.exception() for future in [pool.submit(chain, role) for role in roles]]
    failed = [error for error in errors if error is not None]
    if failed:
        # Airflow's default trigger rule: a failed worker chain leaves the signer running.
        raise RuntimeError(f"{len(failed)} worker chain(s) failed, the first: {failed[0]}")
    flow.run("stop_signer")


def _each(polls: list[Any]) -> Callable[[], list[Any]]:
    return lambda: [poll() for poll in polls]


def probe_poll_rounds(spec: FlowSpec, flow: DagFlow) -> list[dict[str, Any]]:
    """Poll the whole fleet's state once as each wait does; the time window of each probe, in which
    the parent counts the API calls the simulator logged."""
    from operators.fleet_ec2_triggers import FleetInstanceStateTrigger
    from operators.fleet_ssm_triggers import FleetSsmAgentOnlineTrigger

    common = {"aws_conn_id": spec.fleet["aws_conn_id"], "region_name": spec.fleet["region"]}
    if spec.flow == "ours":

        def state(ids: list[str]) -> Callable[[], Any]:
            return FleetInstanceStateTrigger(instance_ids=ids, target_state="stopped", **common).poll_once

        def online(ids: list[str]) -> Callable[[], Any]:
            return FleetSsmAgentOnlineTrigger(instance_ids=ids, **common).poll_once

        workers = spec.workers
        probes = [
            ("instance_state.batched", state(workers)),
            ("instance_state.per_role", _each([state([worker]) for worker in workers])),
            ("ssm_online.batched", online(workers)),
            ("ssm_online.per_role", _each([online([worker]) for worker in workers])),
        ]
    else:
        context = flow.context("wait_stopped")
        sensors = [flow.dag.get_task(f"{role['name']}.wait_stopped") for role in spec.fleet["roles"]]
        probes = [("instance_state.per_instance", lambda: [sensor.poke(context) for sensor in sensors])]
    windows = []
    for name, poll in probes:
        poll()  # first: clients are made (no AWS call) and anything lazy is loaded
        time.sleep(0.05)
        began = time.time()
        poll()
        windows.append({"probe": name, "started": began, "ended": time.time()})
        time.sleep(0.05)
    return windows


def run_flow(spec: FlowSpec) -> dict[str, Any]:
    """The probes, or the flow's run: everything the parent needs to read the simulator's logs."""
    meter = SlotMeter()
    flow = DagFlow(build(spec), spec.run_date, meter)
    if spec.probes_only:
        return {"probes": probe_poll_rounds(spec, flow)}
    result: dict[str, Any] = {"error": None, "started": time.time()}
    real_sleep = time.sleep
    # Operators, sensors and botocore's waiters wait with time.sleep: count it where a slot is held.
    time.sleep = meter.counting_sleep(real_sleep)
    try:
        (run_ours if spec.flow == "ours" else run_stock)(spec, flow)
    except Exception as error:  # the report says what failed; the parent still reads the logs
        result["error"] = f"{type(error).__name__}: {error}"
    finally:
        time.sleep = real_sleep
    return {**result, "ended": time.time(), "slots": meter.to_dict()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.flows", description="Run one flow (see bench.flows)."
    )
    parser.add_argument("spec", type=Path, help="the FlowSpec, JSON")
    parser.add_argument("out", type=Path, help="where to write the result, JSON")
    args = parser.parse_args(argv)
    share_botocore_loader()
    result = run_flow(FlowSpec(**json.loads(args.spec.read_text())))
    result["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: kilobytes
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
