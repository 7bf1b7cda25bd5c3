"""The daily flow at operator level, ours and stock, run in one process like a worker and a triggerer.

A *task* runs the way Airflow runs it: ``execute`` in a worker slot; a ``TaskDeferred`` hands
its trigger to the :class:`Triggerer` (an asyncio loop in a thread of its own, like Airflow's
triggerer) and frees the slot; the trigger's first event resumes the task, in a slot again.
:class:`SlotMeter` counts the slots held: how many at once, and for how many seconds, by step.

- **ours** (:func:`run_ours`): one task per step over all N workers, the project's operators
  with ``deferrable=True``: start the signer (waits for ``running``, deferred), start the workers
  (one batched call), wait ``running``, wait for the SSM agents, run the agent command (batches
  of 50), wait ``stopped`` (the agents stop their own instances), stop the signer (deferred).
- **stock** (:func:`run_stock`): start the signer, then per worker a chain ``start →
  run_agent → wait_stopped`` of the provider's operators (their own threads, all at once: as
  many worker slots as Airflow would give), then stop the signer.

Both leave out the DAG's ``skip_if_done`` and ``report`` steps (one DescribeInstances and no
AWS call per role). :func:`probe_poll_rounds` polls the fleet's state once the way each side
does, to count the AWS calls of one poll round.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

# Past a deferral's own timeout, how long to wait for the trigger before giving up.
DEFERRAL_GRACE = 60.0


@dataclass
class FlowSpec:
    """What a flow runs on (JSON-serializable: the parent process hands it to the child)."""

    flow: str  # "ours" | "stock"
    signer: str
    workers: list[str]
    # Shell script per worker instance (the rendered agent command, or the stand-in).
    scripts: dict[str, str]
    run_date: str
    poll_interval: float = 5.0
    stock_intervals: dict[str, float | None] = field(default_factory=dict)
    boot_timeout: float = 300.0
    max_runtime: float = 600.0
    heartbeat_grace: float = 120.0
    aws_conn_id: str = "aws_default"
    region: str = "us-east-1"
    probe: bool = True
    # False: only the poll-round probes (when the flow itself ran through real Airflow).
    run: bool = True

    def __post_init__(self) -> None:
        if self.flow not in ("ours", "stock"):
            raise ValueError(f"flow must be 'ours' or 'stock', got {self.flow!r}")
        if not self.workers:
            raise ValueError("a flow needs at least one worker instance")
        missing = [worker for worker in self.workers if worker not in self.scripts]
        if missing:
            raise ValueError(f"no script for worker(s) {missing[:5]}")

    @property
    def common(self) -> dict[str, Any]:
        return {"aws_conn_id": self.aws_conn_id, "region_name": self.region}


class SlotMeter:
    """Worker slots held: a task holds one while its own code runs, none while deferred."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._local = threading.local()
        self.held_now = 0
        self.peak = 0
        self.slot_seconds = 0.0
        self.by_step: dict[str, float] = {}
        # Seconds slept while holding a slot: waiting in a worker slot (a poke, a waiter, a loop).
        self.waiting_seconds = 0.0
        self.waiting_by_step: dict[str, float] = {}

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
                self.by_step[step] = self.by_step.get(step, 0.0) + spent

    def counting_sleep(self, sleep: Callable[[float], None]) -> Callable[[float], None]:
        """``sleep``, counting the seconds a thread sleeps while it holds a slot."""

        def counted(seconds: float) -> None:
            step = getattr(self._local, "step", None)
            began = self._clock()
            try:
                sleep(seconds)
            finally:
                if step is not None:
                    slept = self._clock() - began
                    with self._lock:
                        self.waiting_seconds += slept
                        self.waiting_by_step[step] = self.waiting_by_step.get(step, 0.0) + slept

        return counted

    def to_dict(self) -> dict[str, Any]:
        return {
            "peak": self.peak,
            "slot_seconds": round(self.slot_seconds, 3),
            "by_step": {step: round(seconds, 3) for step, seconds in sorted(self.by_step.items())},
            "waiting_seconds": round(self.waiting_seconds, 3),
            "waiting_by_step": {k: round(v, 3) for k, v in sorted(self.waiting_by_step.items())},
        }


class Triggerer:
    """Runs triggers to their first event on one asyncio loop in a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="bench-triggerer", daemon=True)
        self._thread.start()
        self._lock = threading.Lock()
        self.deferred_seconds: dict[str, float] = {}
        self.triggers_run = 0

    def run(self, trigger: Any, step: str, timeout: float | None) -> dict[str, Any]:
        began = time.monotonic()
        future = asyncio.run_coroutine_threadsafe(self._first_event(trigger), self.loop)
        try:
            payload = future.result(None if timeout is None else timeout + DEFERRAL_GRACE)
        finally:
            with self._lock:
                self.triggers_run += 1
                self.deferred_seconds[step] = self.deferred_seconds.get(step, 0.0) + time.monotonic() - began
        return payload

    @staticmethod
    async def _first_event(trigger: Any) -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise RuntimeError(f"trigger {type(trigger).__name__} ended without an event")

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


class FakeTaskInstance:
    """What the operators ask of ``context["ti"]`` here: XCom push and pull."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, key: str = "return_value", **_: Any) -> Any:
        return self.xcom.get(key)


def task_context(run_date: str) -> dict[str, Any]:
    return {"ti": FakeTaskInstance(), "params": {"force": False}, "ds": run_date}


@dataclass
class StepRecord:
    step: str
    started: float
    ended: float
    error: str | None = None


class FlowRecorder:
    """The steps a flow ran, with wall-clock times (for the simulator's timeline)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.steps: list[StepRecord] = []

    def add(self, record: StepRecord) -> None:
        with self._lock:
            self.steps.append(record)


def run_task(
    operator: Any,
    step: str,
    *,
    meter: SlotMeter,
    triggerer: Triggerer,
    recorder: FlowRecorder,
    context: dict[str, Any] | None = None,
) -> Any:
    """Run one operator as Airflow would: execute, defer to the triggerer, resume on the event."""
    began = time.time()
    try:
        result = _execute(operator, step, meter, triggerer, context or task_context(""))
    except BaseException as error:
        recorder.add(StepRecord(step, began, time.time(), f"{type(error).__name__}: {error}"))
        raise
    recorder.add(StepRecord(step, began, time.time()))
    return result


def _execute(
    operator: Any, step: str, meter: SlotMeter, triggerer: Triggerer, context: dict[str, Any]
) -> Any:
    from airflow.sdk.exceptions import TaskDeferred

    with meter.held(step):
        try:
            return operator.execute(context)
        except TaskDeferred as deferral:
            pending = deferral
    while True:
        timeout = _seconds(pending.timeout)
        event = triggerer.run(pending.trigger, step, timeout)
        with meter.held(step):
            try:
                return operator.resume_execution(
                    pending.method_name, {**(pending.kwargs or {}), "event": event}, context
                )
            except TaskDeferred as deferral:
                pending = deferral


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if hasattr(value, "total_seconds") else float(value)


# -- ours --------------------------------------------------------------------------------------


def run_ours(spec: FlowSpec, meter: SlotMeter, triggerer: Triggerer, recorder: FlowRecorder) -> None:
    from operators.fleet_ec2_operators import FleetStartInstancesOperator, FleetStopInstancesOperator
    from operators.fleet_ec2_sensors import FleetInstanceStateSensor
    from operators.fleet_ssm_operators import FleetRunCommandOperator
    from operators.fleet_ssm_sensors import FleetSsmAgentOnlineSensor

    poll = spec.poll_interval
    attempts = max(1, int(spec.boot_timeout // max(poll, 1)))
    scripts = {spec.scripts[worker] for worker in spec.workers}
    if len(scripts) != 1:
        raise ValueError("the batched flow sends one command to every worker: give one script for all")
    run = {"meter": meter, "triggerer": triggerer, "recorder": recorder}
    signer_wait = {"deferrable": True, "waiter_delay": poll, "waiter_max_attempts": attempts}

    run_task(
        FleetStartInstancesOperator(
            task_id="start_signer", instance_ids=[spec.signer], **signer_wait, **spec.common
        ),
        "start_signer",
        **run,
    )
    try:
        workers = run_task(
            FleetStartInstancesOperator(
                task_id="start", instance_ids=spec.workers, wait_for_completion=False, **spec.common
            ),
            "start",
            **run,
        )
        run_task(
            FleetInstanceStateSensor(
                task_id="wait_running",
                instance_ids=workers,
                target_state="running",
                deferrable=True,
                poke_interval=poll,
                timeout=spec.boot_timeout,
                **spec.common,
            ),
            "wait_running",
            **run,
        )
        run_task(
            FleetSsmAgentOnlineSensor(
                task_id="wait_ssm_online",
                instance_ids=workers,
                deferrable=True,
                waiter_delay=poll,
                waiter_max_attempts=attempts,
                **spec.common,
            ),
            "wait_ssm_online",
            **run,
        )
        command_poll = max(1, min(int(poll), 5))
        run_task(
            FleetRunCommandOperator(
                task_id="run_agent",
                instance_ids=workers,
                parameters={"commands": [scripts.pop()]},
                comment=f"bench ours {spec.run_date}",
                execution_timeout_seconds=300,
                reuse_in_flight=True,
                deferrable=True,
                waiter_delay=command_poll,
                waiter_max_attempts=300 // command_poll + 1,
                **spec.common,
            ),
            "run_agent",
            **run,
        )
        run_task(
            FleetInstanceStateSensor(
                task_id="wait_stopped",
                instance_ids=workers,
                target_state="stopped",
                heartbeat_grace=spec.heartbeat_grace,
                run_date=spec.run_date,
                stop_on_failure=True,
                deferrable=True,
                poke_interval=poll,
                timeout=spec.max_runtime,
                **spec.common,
            ),
            "wait_stopped",
            **run,
        )
    finally:
        # The DAG's teardown: the signer is stopped whatever happened to the workers.
        run_task(
            FleetStopInstancesOperator(
                task_id="stop_signer", instance_ids=[spec.signer], **signer_wait, **spec.common
            ),
            "stop_signer",
            **run,
        )


# -- stock -------------------------------------------------------------------------------------


def run_stock(spec: FlowSpec, meter: SlotMeter, triggerer: Triggerer, recorder: FlowRecorder) -> None:
    from bench.stock_dag import (
        StockIntervals,
        run_command_operator,
        start_operator,
        stop_operator,
        stopped_sensor,
    )

    intervals = StockIntervals(**spec.stock_intervals)
    run = {"meter": meter, "triggerer": triggerer, "recorder": recorder}
    run_task(start_operator("start_signer", spec.signer, intervals, **spec.common), "start_signer", **run)

    def chain(worker: str) -> None:
        run_task(start_operator("start", worker, intervals, **spec.common), "start", **run)
        run_task(
            run_command_operator(
                "run_agent",
                worker,
                spec.scripts[worker],
                f"bench stock {spec.run_date}",
                intervals,
                **spec.common,
            ),
            "run_agent",
            **run,
        )
        run_task(stopped_sensor("wait_stopped", worker, intervals, **spec.common), "wait_stopped", **run)

    # One thread per worker: every chain gets its worker slots at once, as with enough parallelism.
    with ThreadPoolExecutor(max_workers=len(spec.workers), thread_name_prefix="stock") as pool:
        futures = [pool.submit(chain, worker) for worker in spec.workers]
        errors = [future.exception() for future in futures]
    failed = [error for error in errors if error is not None]
    if failed:
        # Airflow's default trigger rule: a failed worker chain leaves the signer running.
        raise RuntimeError(f"{len(failed)} worker chain(s) failed, the first: {failed[0]}")
    run_task(stop_operator("stop_signer", spec.signer, intervals, **spec.common), "stop_signer", **run)


# -- one poll round ----------------------------------------------------------------------------


def probe_poll_rounds(spec: FlowSpec) -> list[dict[str, Any]]:
    """Poll the whole fleet's state once as each wait does; the time window of each probe.

    The parent counts the API calls the simulator logged in each window.
    """
    from operators.fleet_ec2_triggers import FleetInstanceStateTrigger
    from operators.fleet_ssm_triggers import FleetSsmAgentOnlineTrigger

    from bench.stock_dag import StockIntervals, stopped_sensor

    common = spec.common
    probes: list[tuple[str, Callable[[], Any]]] = []
    if spec.flow == "ours":
        batched = FleetInstanceStateTrigger(instance_ids=spec.workers, target_state="stopped", **common)
        per_role = [
            FleetInstanceStateTrigger(instance_ids=[worker], target_state="stopped", **common)
            for worker in spec.workers
        ]
        agents = FleetSsmAgentOnlineTrigger(instance_ids=spec.workers, **common)
        agents_per_role = [FleetSsmAgentOnlineTrigger(instance_ids=[w], **common) for w in spec.workers]
        probes += [
            ("instance_state.batched", batched.poll_once),
            ("instance_state.per_role", lambda: [trigger.poll_once() for trigger in per_role]),
            ("ssm_online.batched", agents.poll_once),
            ("ssm_online.per_role", lambda: [trigger.poll_once() for trigger in agents_per_role]),
        ]
    else:
        intervals = StockIntervals(**spec.stock_intervals)
        sensors = [stopped_sensor(f"wait_stopped_{w}", w, intervals, **common) for w in spec.workers]
        context = task_context(spec.run_date)
        probes.append(("instance_state.per_instance", lambda: [s.poke(context) for s in sensors]))
    windows = []
    for name, poll in probes:
        poll()  # first: clients are made (no AWS call) and anything lazy is loaded
        time.sleep(0.05)
        began = time.time()
        poll()
        ended = time.time()
        windows.append({"probe": name, "started": began, "ended": ended})
        time.sleep(0.05)
    return windows


FLOWS: dict[str, Callable[[FlowSpec, SlotMeter, Triggerer, FlowRecorder], None]] = {
    "ours": run_ours,
    "stock": run_stock,
}


def run_flow(spec: FlowSpec) -> dict[str, Any]:
    """Probe, then run the flow; everything the parent needs to read the simulator's logs."""
    meter, triggerer, recorder = SlotMeter(), Triggerer(), FlowRecorder()
    result: dict[str, Any] = {"flow": spec.flow, "workers": len(spec.workers), "error": None}
    real_sleep = time.sleep
    # Operators, sensors and botocore's waiters wait with time.sleep: count it where a slot is held.
    time.sleep = meter.counting_sleep(real_sleep)
    try:
        result["probes"] = probe_poll_rounds(spec) if spec.probe else []
        result["started"] = time.time()
        if spec.run:
            try:
                FLOWS[spec.flow](spec, meter, triggerer, recorder)
            except Exception as error:  # the report says what failed; the parent still reads the logs
                result["error"] = f"{type(error).__name__}: {error}"
        result["ended"] = time.time()
    finally:
        time.sleep = real_sleep
        triggerer.close()
    result["slots"] = meter.to_dict()
    result["deferred_seconds"] = {k: round(v, 3) for k, v in sorted(triggerer.deferred_seconds.items())}
    result["triggers_run"] = triggerer.triggers_run
    result["steps"] = [asdict(step) for step in recorder.steps]
    return result
