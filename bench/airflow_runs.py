"""Full DAG runs through real Airflow on the simulator (``bench/method.md``, *Full runs*): ``fleet_daily``
(the project's DAG file, unchanged), then the stock DAG of :mod:`bench.stock_dag` polling at the
fleet's ``poll_interval`` and at the provider's defaults, with task states and process memory sampled.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import fleets, measure, metrics
from bench.procs import TreeSampler
from bench.results import OURS, STOCK, STOCK_DEFAULTS, SideResult, SizeResult
from bench.stock_dag import STOCK_DAG_ID

OURS_DAG_ID = "fleet_daily"
SAMPLE_SECONDS = 0.5

# The stock DAGs' file. Airflow's safe-mode discovery only parses files that say "airflow" and "dag".
STOCK_DAG_FILE = '''"""Airflow DAG file of the benchmark: the fleet's flow from stock operators
(bench/stock_dag.py).
"""

from fleet_dag.config import load_config

from bench.stock_dag import StockIntervals, build_stock_dag

config = load_config()
stock_defaults = build_stock_dag(config)
stock_shortened = build_stock_dag(config, dag_id={dag_id!r}, intervals=StockIntervals.every({poll!r}))
'''


def stock_dag_id(poll_interval: float) -> str:
    return f"{STOCK_DAG_ID}_{poll_interval:g}s"


def write_dag_folder(folder: Path, poll_interval: float) -> Path:
    """The project's own ``dags/fleet_daily.py`` (copied unchanged) and the stock DAGs' file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fleet_daily.py").write_text((measure.REPO / "dags" / "fleet_daily.py").read_text())
    (folder / "fleet_daily_stock.py").write_text(
        STOCK_DAG_FILE.format(dag_id=stock_dag_id(poll_interval), poll=float(poll_interval))
    )
    return folder


def run_and_sample(af: Any, dag_id: str, run_date: str, timeout: float) -> dict[str, Any]:
    """Trigger a run and follow it: task states and process memory, until it ends."""
    from airflow_harness import HarnessError

    roots = [process.pid for process in af.processes.values()]
    sampler = TreeSampler(roots=lambda: roots).start()
    samples: list[tuple[float, dict[str, Any]]] = []
    triggered, error = time.time(), None
    run_id = af.trigger(run_date, dag_id=dag_id)
    try:
        af.wait_for_run(
            run_id,
            timeout,
            dag_id,
            poll=SAMPLE_SECONDS,
            stall_after=None,
            on_poll=lambda run, tis: samples.append(
                (time.time(), {ti["task_id"]: ti.get("state") for ti in tis})
            ),
        )
    except HarnessError:
        af.check_processes()  # a component that exited fails the size; else the run did not end in time
        error = f"not measured: the run did not end in {timeout:.0f} s"
    finally:
        sampler.stop()
    run = af.run_result(run_id, dag_id)
    return {"run": run, "triggered": triggered, "samples": samples, "sampler": sampler, "error": error}


def measure_airflow(
    workers: int,
    *,
    workdir: Path,
    job_seconds: float = 5.0,
    poll_interval: float = 5.0,
    timeout: float = 600.0,
) -> SizeResult:
    """``fleet_daily`` and the stock DAGs, full runs through Airflow, on a fleet of ``workers``."""
    from fleet_dag.config import parse_config

    from airflow_harness import AirflowHarness
    from fleet_sim import FleetSimulator

    began = time.monotonic()
    result = SizeResult(workers=workers, method="airflow", host_program="agent")
    runs = {OURS: OURS_DAG_ID, STOCK: stock_dag_id(poll_interval), STOCK_DEFAULTS: STOCK_DAG_ID}
    base = fleets.fleet_config(workers, job_seconds=job_seconds, poll_interval=poll_interval)
    with FleetSimulator(fleet_config=base, scenario=measure.SCENARIO, workdir=workdir / "sim") as sim:
        sim_config = fleets.sim_config(base, sim)
        config_path = fleets.write_yaml(workdir / "fleet.sim.yaml", sim_config)
        config = parse_config(sim_config)
        fleet = measure.Fleet(sim, config.signer.instance, [role.instance for role in config.roles])
        dags = write_dag_folder(workdir / "dags", poll_interval)
        harness = AirflowHarness(
            workdir / "airflow",
            fleet_config=config_path,
            aws_connection=sim.airflow_connection(),
            extra_env={
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                # fleet_dag lives in the project's dags/, bench in the repository's root.
                "PYTHONPATH": f"{measure.REPO}:{measure.REPO / 'dags'}",
            },
        )
        with harness as af:
            for dag_id in runs.values():
                af.wait_for_dag(dag_id, timeout=180)
            for (key, dag_id), run_date in zip(runs.items(), measure.RUN_DATES, strict=True):
                raw = run_and_sample(af, dag_id, run_date, timeout)
                side = result.sides[key] = measure.new_side(key, poll_interval)
                _fill(side, raw, af, fleet, run_date, with_triggerer=key == OURS)
                measure.settle(side, fleet, "run")
        return measure.finish(
            result, fleet, measure.flow_fleets(base, fleet, job_seconds), workdir, poll_interval, began
        )


def _fill(
    side: SideResult,
    raw: dict[str, Any],
    af: Any,
    fleet: measure.Fleet,
    run_date: str,
    *,
    with_triggerer: bool,
) -> None:
    run = raw["run"]
    side.error = raw["error"]
    if run.state != "success" and side.error is None:
        failed = [task for task, state in run.states().items() if state not in ("success", "skipped")]
        side.error = f"the run {run.state}; tasks not successful: {', '.join(failed) or 'none'}"
    ended = run.end_date.timestamp() if run.end_date else time.time()
    if run.start_date and run.end_date:
        side.wall = (run.end_date - run.start_date).total_seconds()
    measure.side_from_logs(side, fleet, run_date, raw["triggered"], ended)
    slots = metrics.integrate_states(raw["samples"])
    deferred_tasks = {
        task_id for _, states in raw["samples"] for task_id, state in states.items() if state == "deferred"
    }
    side.deferred_steps = sorted({metrics.step_of(task_id) for task_id in deferred_tasks})
    durations = {
        task_id: (task.end_date - task.start_date).total_seconds()
        for task_id, task in run.tasks.items()
        if task.start_date and task.end_date
    }
    by_task = metrics.slot_seconds_by_task(slots.running_by_task, durations, deferred_tasks)
    side.slots_peak = slots.peak_running
    side.slot_seconds = sum(by_task.values())
    by_step: defaultdict[str, float] = defaultdict(float)
    for task_id, seconds in sorted(by_task.items()):
        by_step[metrics.step_of(task_id)] += seconds
    side.slot_by_step = dict(by_step)
    side.deferred_seconds = slots.deferred_seconds
    sampler: TreeSampler = raw["sampler"]
    task_peaks = sampler.task_peaks()
    side.memory["largest task process (VmHWM)"] = max(task_peaks) if task_peaks else None
    at_once = "task processes alive at once, summed RSS (peak)"
    side.memory[at_once] = sampler.peak_tasks_total_kb or None
    side.memory_notes[at_once] = f"up to {sampler.peak_tasks_at_once} processes"
    if with_triggerer:
        triggerer = af.processes["triggerer"].pid
        side.memory["triggerer's trigger process (VmHWM)"] = sampler.peak_of(
            lambda process: process.parent == triggerer and "triggerer" in process.title
        )
