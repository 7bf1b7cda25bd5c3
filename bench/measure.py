"""One fleet size at operator level: a simulator here, ours then stock each in a child process
(:mod:`bench.flows`, so that its ``ru_maxrss`` is the orchestration's own memory), every metric from
what the simulator recorded. The pieces shared with the full Airflow runs (:mod:`bench.airflow_runs`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import fleets, metrics
from bench.flows import ROLE, FlowSpec
from bench.old_scripts_model import JobSpan, model
from bench.results import OURS, STOCK, STOCK_DEFAULTS, SideResult, SizeResult
from bench.stock_dag import StockIntervals

REPO = Path(__file__).resolve().parent.parent
RUN_DATES = ("2026-11-23", "2026-11-24", "2026-11-25")
# Simulator timings (its defaults): boot and stop transitions, SSM registration, delivery.
SCENARIO = {"transition_delay": 0.5, "registration_delay": 1.0, "delivery_delay": 0.1}


@dataclass
class Fleet:
    """The simulated fleet a size is measured on."""

    sim: Any
    signer: str
    workers: list[str]
    host_program: str = "agent"


def new_side(key: str, poll_interval: float) -> SideResult:
    """An empty result for one flow, saying how it polls."""
    intervals = {
        OURS: f"waits poll every {poll_interval:g} s (fleet config poll_interval)",
        STOCK: StockIntervals.every(poll_interval).describe(),
        STOCK_DEFAULTS: StockIntervals().describe(),
    }[key]
    poll = poll_interval if key != STOCK_DEFAULTS else 60.0
    return SideResult(key=key, intervals=intervals, poll_interval=poll)


def child_environment(home: Path, **extra: str) -> dict[str, str]:
    """A child process's environment: the project importable, Airflow at ``home``, nothing of real AWS."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "AWS_", "FLEET_"))
    }
    return {
        **env,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "dags"), str(REPO / "plugins")]),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AWS_EC2_METADATA_DISABLED": "true",
        **extra,
    }


def run_json_child(
    module: str, args: list[str], env: dict[str, str], out: Path, timeout: float
) -> dict[str, Any]:
    """``python -m module *args out``: the JSON it wrote to ``out``, or ``{"error": ...}`` (its log
    is ``out`` with ``.log``)."""
    out.unlink(missing_ok=True)
    log_path = out.with_suffix(".log")
    with open(log_path, "wb") as log:
        try:
            command = [sys.executable, "-m", module, *args, str(out)]
            process = subprocess.run(
                command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return {"error": f"not measured: python -m {module} did not finish in {timeout:.0f} s"}
    if process.returncode != 0 or not out.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        return {"error": f"python -m {module} exited {process.returncode}:\n{tail}"}
    return json.loads(out.read_text())


def run_child(spec: FlowSpec, sim: Any, workdir: Path, name: str, timeout: float) -> dict[str, Any]:
    """Run one flow in a child process (:mod:`bench.flows`); its result, or ``{"error": ...}``."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path = workdir / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec.__dict__))
    env = child_environment(workdir / "airflow-home", AIRFLOW_CONN_AWS_DEFAULT=sim.airflow_connection())
    return run_json_child("bench.flows", [str(spec_path)], env, workdir / f"{name}.result.json", timeout)


def job_spans(fleet: Fleet, run_date: str, since: float) -> dict[str, tuple[float | None, float | None]]:
    """Each worker's job start and end (Unix time) for this run, from the host's own record."""
    from fleet_sim.timeline import parse_iso

    sim, spans = fleet.sim, {}
    for worker in fleet.workers:
        start = end = None
        if fleet.host_program == "agent":
            state = sim.agent_state(worker) or {}
            if state.get("date") == run_date:
                job = (state.get("jobs") or {}).get(fleets.JOB_NAME) or {}
                start, end = parse_iso(job.get("started_at")), parse_iso(job.get("ended_at"))
        else:
            started = [e["t"] for e in sim.timeline(worker, "command_started") if e["t"] >= since]
            start = started[0] if started else None
            end = fleets.standin_job_end(sim.host(worker).sandbox)
            end = end if end is not None and end >= since else None
        spans[worker] = (start, end)
    return spans


def side_from_logs(side: SideResult, fleet: Fleet, run_date: str, started: float, ended: float) -> SideResult:
    """Fill a side's timing and API-call metrics from the simulator's records of ``[started, ended]``."""
    events, workers = fleet.sim.timeline(), fleet.workers
    spans = job_spans(fleet, run_date, started)
    idles = [metrics.worker_idle(events, worker, spans[worker][1]) for worker in workers]
    side.idle_to_stopping = [stopping for stopping, _ in idles]
    side.idle_to_stopped = [stopped for _, stopped in idles]
    side.signer_lag = metrics.signer_lag(events, fleet.signer, workers, started)
    known = [(start, end) for start, end in spans.values() if start is not None and end is not None]
    side.longest_job = max((end - start for start, end in known), default=None)
    starts = [start for start, _ in spans.values() if start is not None]
    side.job_start_spread = max(starts) - min(starts) if starts else None
    side.job_spans = [(start - started, end - started) for start, end in known]
    if len(known) < len(workers):
        missing = len(workers) - len(known)
        side.notes.append(f"{missing} of {len(workers)} workers left no record of their job's start and end")
    calls = fleet.sim.api_calls(started, ended + 1.0)
    orchestration = metrics.orchestration_calls(calls, started, ended + 1.0)
    side.calls = metrics.by_operation(orchestration)
    side.calls_by_caller = metrics.by_caller(orchestration)
    side.host_calls = sum(1 for call in calls if call.get("caller") is None)
    return side


def settle(side: SideResult, fleet: Fleet, what: str, timeout: float = 120.0) -> None:
    """Stop what a failed flow left running (outside any measured window), and say so."""
    sim = fleet.sim
    up = [i for i in (fleet.signer, *fleet.workers) if sim.state(i) in ("pending", "running", "stopping")]
    running = [i for i in up if sim.state(i) == "running"]
    if running:
        sim.client("ec2").stop_instances(InstanceIds=running, Force=True)
    for instance_id in up:
        sim.wait_for_state(instance_id, "stopped", timeout=timeout)
    if up:
        side.notes.append(f"{len(up)} instance(s) left up after the {what}; stopped by the bench")


def flow_fleets(base: dict[str, Any], fleet: Fleet, job_seconds: float) -> dict[str, dict[str, Any]]:
    """The configs the flows' DAGs are built from: ours one role over every worker, stock a role each."""
    standin = job_seconds if fleet.host_program == "stand-in" else None
    return {
        key: fleets.for_flow(
            base, fleet.signer, fleet.workers, one_role=ROLE if key == OURS else None, standin_seconds=standin
        )
        for key in (OURS, STOCK)
    }


def finish(
    result: SizeResult,
    fleet: Fleet,
    configs: dict[str, Any],
    workdir: Path,
    poll_interval: float,
    began: float,
) -> SizeResult:
    """The poll-round probes (a process of their own), the old scripts' model, the time it took."""
    for key, stock_args in ((OURS, {}), (STOCK, StockIntervals.every(poll_interval).__dict__)):
        spec = FlowSpec(key, configs[key], fleet.workers, RUN_DATES[0], stock_args, probes_only=True)
        raw = run_child(spec, fleet.sim, workdir / "probes", key, timeout=300)
        result.probes[key] = metrics.probe_counts(fleet.sim.api_calls(), raw.get("probes", []))
    ours = result.sides.get(OURS)
    if ours is not None and ours.job_spans:
        result.model = model([JobSpan(start, end) for start, end in ours.job_spans])
    result.seconds = time.monotonic() - began
    return result


def measure_in_process(
    workers: int,
    *,
    workdir: Path,
    job_seconds: float = 5.0,
    poll_interval: float = 5.0,
    host_program: str = "agent",
    timeout: float = 900.0,
) -> SizeResult:
    """Ours and stock at operator level on one simulated fleet of ``workers`` workers + a signer."""
    from fleet_sim import FleetSimulator

    began = time.monotonic()
    result = SizeResult(workers=workers, method="in-process", host_program=host_program)
    base = fleets.fleet_config(workers, job_seconds=job_seconds, poll_interval=poll_interval)
    # The workers as one reservation: moto pages DescribeInstances by 100 reservations even when the
    # request names its instance IDs, which AWS does not do (it refuses MaxResults with IDs).
    with FleetSimulator(
        roles={fleets.SIGNER_ROLE: 1, "workers": workers}, scenario=SCENARIO, workdir=workdir / "sim"
    ) as sim:
        fleet = Fleet(sim, sim.instance_for(fleets.SIGNER_ROLE), sim.instances_for("workers"), host_program)
        configs = flow_fleets(base, fleet, job_seconds)
        for key, run_date in zip((OURS, STOCK), RUN_DATES, strict=False):
            stock_args = StockIntervals.every(poll_interval).__dict__ if key == STOCK else {}
            spec = FlowSpec(key, configs[key], fleet.workers, run_date, stock_intervals=stock_args)
            raw = run_child(spec, sim, workdir / "flows", key, timeout)
            side = result.sides[key] = new_side(key, poll_interval)
            side.error = raw.get("error")
            if "ended" in raw:
                side.wall = raw["ended"] - raw["started"]
                side_from_logs(side, fleet, run_date, raw["started"], raw["ended"])
                slots = raw["slots"]
                side.slots_peak, side.slot_seconds = slots["peak"], slots["slot_seconds"]
                side.slot_by_step, side.waiting_slot_seconds = slots["by_step"], slots["waiting_seconds"]
                side.deferred_seconds = sum(slots["deferred_by_step"].values())
                side.deferred_steps = sorted(slots["deferred_by_step"])
                side.memory["flow process ru_maxrss"] = raw.get("maxrss_kb")
            settle(side, fleet, "flow")
        return finish(result, fleet, configs, workdir, poll_interval, began)
