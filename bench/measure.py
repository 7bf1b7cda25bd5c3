"""One fleet size, measured at operator level: a simulator, ours then stock, metrics from its logs.

The simulator runs in this process; each flow runs in a child process
(:mod:`bench.flow_child`), so that the child's ``ru_maxrss`` is the orchestration's own memory.
The two flows run one after the other on the same simulated fleet, each for its own run date
(the agent runs a date's jobs once). Every metric comes from what the simulator recorded: its
timeline (state changes) and its API call log (by caller), plus each host's record of its jobs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import fleets, metrics
from bench.flows import FlowSpec
from bench.old_scripts_model import JobSpan, model
from bench.results import OURS, STOCK, SideResult, SizeResult
from bench.stock_dag import StockIntervals

REPO = Path(__file__).resolve().parent.parent
RUN_DATES = ("2026-11-23", "2026-11-24", "2026-11-25")
# Simulator timings (its defaults): boot and stop transitions, SSM registration, delivery.
SCENARIO = {"transition_delay": 0.5, "registration_delay": 1.0, "delivery_delay": 0.1}
OURS_LABEL = "ours: fleet operators, deferrable"
STOCK_LABEL = "stock provider operators"


def child_environment(sim: Any, home: Path) -> dict[str, str]:
    """A flow child's environment: Airflow pointed at the simulator, nothing of real AWS."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "AWS_", "FLEET_")) and key != "PYTHONPATH"
    }
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "dags"), str(REPO / "plugins")]),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW_CONN_AWS_DEFAULT": sim.airflow_connection(),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    return env


def run_child(spec: FlowSpec, sim: Any, workdir: Path, name: str, timeout: float) -> dict[str, Any]:
    """Run one flow in a child process; its result, or ``{"error": ...}`` when it did not finish."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path, out_path, log_path = (workdir / f"{name}.{ext}" for ext in ("spec.json", "result.json", "log"))
    spec_path.write_text(json.dumps(spec.__dict__))
    out_path.unlink(missing_ok=True)
    started = time.time()
    with open(log_path, "wb") as log:
        try:
            process = subprocess.run(
                [sys.executable, "-m", "bench.flow_child", str(spec_path), str(out_path)],
                env=child_environment(sim, workdir / "airflow-home"),
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"not measured: the flow did not finish in {timeout:.0f} s", "started": started}
    if process.returncode != 0 or not out_path.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        return {"error": f"the flow process exited {process.returncode}:\n{tail}", "started": started}
    return json.loads(out_path.read_text())


def job_spans(
    sim: Any, workers: Sequence[str], host_program: str, run_date: str, since: float
) -> dict[str, tuple[float | None, float | None]]:
    """Each worker's job start and end (Unix time) for this run, from the host's own record."""
    spans: dict[str, tuple[float | None, float | None]] = {}
    for worker in workers:
        start = end = None
        if host_program == "agent":
            state = sim.agent_state(worker) or {}
            if state.get("date") == run_date:
                job = (state.get("jobs") or {}).get(fleets.JOB_NAME) or {}
                start, end = _unix(job.get("started_at")), _unix(job.get("ended_at"))
        else:
            started = [e["t"] for e in sim.timeline(worker, "command_started") if e["t"] >= since]
            start = started[0] if started else None
            end = fleets.standin_job_end(sim.host(worker).sandbox)
            end = end if end is not None and end >= since else None
        spans[worker] = (start, end)
    return spans


def side_from_logs(
    side: SideResult,
    sim: Any,
    *,
    signer: str,
    workers: Sequence[str],
    host_program: str,
    run_date: str,
    started: float,
    ended: float,
) -> SideResult:
    """Fill a side's timing and API-call metrics from the simulator's records of ``[started, ended]``."""
    events = sim.timeline()
    spans = job_spans(sim, workers, host_program, run_date, started)
    stops = [metrics.worker_stop(events, worker, *spans[worker]) for worker in workers]
    side.idle_to_stopping = [stop.idle_to_stopping for stop in stops]
    side.idle_to_stopped = [stop.idle_to_stopped for stop in stops]
    side.signer_lag = metrics.signer_lag(events, signer, workers, started)
    durations = [end - start for start, end in spans.values() if start is not None and end is not None]
    side.longest_job = max(durations) if durations else None
    starts = [start for start, _ in spans.values() if start is not None]
    side.job_start_spread = max(starts) - min(starts) if starts else None
    side.job_spans = [
        (start - started, end - started)
        for start, end in spans.values()
        if start is not None and end is not None
    ]
    missing = sum(1 for start, end in spans.values() if start is None or end is None)
    if missing:
        side.notes.append(f"{missing} of {len(workers)} workers left no record of their job's start and end")
    calls = sim.api_calls(started, ended + 1.0)
    orchestration = metrics.orchestration_calls(calls, started, ended + 1.0)
    side.calls = metrics.by_operation(orchestration)
    side.calls_by_caller = metrics.by_caller(orchestration)
    side.host_calls = sum(1 for call in calls if call.get("caller") is None)
    return side


def ensure_stopped(sim: Any, instance_ids: Sequence[str], timeout: float = 120.0) -> list[str]:
    """Stop what a failed flow left running (outside any measured window); returns what it stopped."""
    up = [i for i in instance_ids if sim.state(i) in ("pending", "running", "stopping")]
    running = [i for i in up if sim.state(i) == "running"]
    if running:
        sim.client("ec2").stop_instances(InstanceIds=running, Force=True)
    for instance_id in up:
        sim.wait_for_state(instance_id, "stopped", timeout=timeout)
    return up


def scripts_for(
    config: Any, workers: Sequence[str], host_program: str, run_date: str, job_seconds: float
) -> dict[str, str]:
    """One script for every worker: the agent's command (for a role named ``fleet``) or the stand-in."""
    if host_program == "agent":
        role = config.roles[0].model_copy(update={"name": "fleet"})
        script = fleets.agent_script(config, role, run_date)
    else:
        script = fleets.standin_script(job_seconds)
    return dict.fromkeys(workers, script)


def model_for(side: SideResult | None):
    if side is None or not side.job_spans:
        return None
    return model([JobSpan(start, end) for start, end in side.job_spans])


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
    from fleet_dag.config import parse_config

    from fleet_sim import FleetSimulator

    began = time.monotonic()
    result = SizeResult(workers=workers, method="in-process", host_program=host_program)
    stock_intervals = StockIntervals.every(poll_interval)
    base = fleets.fleet_config(workers, job_seconds=job_seconds, poll_interval=poll_interval)
    # The workers as one reservation: moto pages DescribeInstances by 100 reservations even when the
    # request names its instance IDs, which AWS does not do (it refuses MaxResults with IDs).
    with FleetSimulator(
        roles={fleets.SIGNER_ROLE: 1, "workers": workers}, scenario=SCENARIO, workdir=workdir / "sim"
    ) as sim:
        signer, worker_ids = sim.instance_for(fleets.SIGNER_ROLE), sim.instances_for("workers")
        config = parse_config(fleets.assigned(base, signer, worker_ids))
        sides = (
            (OURS, OURS_LABEL, f"waits poll every {poll_interval:g} s (fleet config poll_interval)", {}),
            (STOCK, STOCK_LABEL, stock_intervals.describe(), stock_intervals.__dict__),
        )
        for (key, label, intervals, stock_args), run_date in zip(sides, RUN_DATES, strict=False):
            spec = FlowSpec(
                flow=key,
                signer=signer,
                workers=worker_ids,
                scripts=scripts_for(config, worker_ids, host_program, run_date, job_seconds),
                run_date=run_date,
                poll_interval=poll_interval,
                stock_intervals=stock_args,
                # The poll-round probes make clients of their own: a process of their own too, so
                # that they do not count in the flow's peak memory.
                probe=False,
            )
            raw = run_child(spec, sim, workdir / "flows", key, timeout)
            side = SideResult(key=key, label=label, intervals=intervals, poll_interval=poll_interval)
            side.error = raw.get("error")
            if "ended" in raw:
                side.wall = raw["ended"] - raw["started"]
                side_from_logs(
                    side,
                    sim,
                    signer=signer,
                    workers=worker_ids,
                    host_program=host_program,
                    run_date=run_date,
                    started=raw["started"],
                    ended=raw["ended"],
                )
                side.slots_peak = raw["slots"]["peak"]
                side.slot_seconds = raw["slots"]["slot_seconds"]
                side.slot_by_step = raw["slots"]["by_step"]
                side.waiting_slot_seconds = raw["slots"]["waiting_seconds"]
                side.deferred_seconds = sum(raw["deferred_seconds"].values())
                side.deferred_steps = sorted(raw["deferred_seconds"])
                side.memory["flow process ru_maxrss"] = raw.get("maxrss_kb")
            left = ensure_stopped(sim, [signer, *worker_ids])
            if left:
                side.notes.append(f"{len(left)} instance(s) left up after the flow; stopped by the bench")
            result.sides[key] = side
        result.probes = probe_only(sim, signer, worker_ids, workdir, stock_intervals)
    result.model = model_for(result.sides.get(OURS))
    result.seconds = time.monotonic() - began
    return result


def _unix(text: str | None) -> float | None:
    from fleet_sim.timeline import parse_iso

    return parse_iso(text)


def probe_only(
    sim: Any, signer: str, worker_ids: Sequence[str], workdir: Path, stock_intervals: StockIntervals
) -> dict[str, dict[str, dict[str, int]]]:
    """The poll-round probes alone (for sizes whose flows ran through real Airflow)."""
    probes: dict[str, dict[str, dict[str, int]]] = {}
    for key, stock_args in ((OURS, {}), (STOCK, stock_intervals.__dict__)):
        spec = FlowSpec(
            flow=key,
            signer=signer,
            workers=list(worker_ids),
            scripts=dict.fromkeys(worker_ids, "true"),
            run_date=RUN_DATES[0],
            stock_intervals=stock_args,
            run=False,
        )
        raw = run_child(spec, sim, workdir / "probes", key, timeout=300)
        probes[key] = metrics.probe_counts(sim.api_calls(), raw.get("probes", []))
    return probes
