"""A small fleet on the simulator with the real Airflow components on it, for the REST e2e tests.

```python
with airflow_on_fleet(work, {"alpha": [demo_job("a1", seconds=1)]}, poll_interval="1s") as (sim, af):
    af.wait_for_run(af.trigger("2026-11-23"), timeout=300)
```

Every role gets one instance and a ``5m`` ``max_runtime``; the signer is its own instance.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from airflow_harness import AirflowHarness
from fleet_sim import FleetSimulator, demo_runs, sim_fleet_config

# Short but real delays: each transition can still be seen between two polls.
SCENARIO = {"transition_delay": 0.5, "registration_delay": 1.0}


def fleet_of(roles: Sequence[str], *, poll_interval: str = "2s") -> dict[str, Any]:
    """The fleet config of ``roles`` before the simulator maps it onto its instances."""
    return {
        "timezone": "UTC",
        "schedule": "0 0 * * *",
        "region": "us-east-1",
        "signer": {"instance": "i-00000000000000000"},
        "roles": [
            {"name": name, "instance": f"i-{index:017x}", "max_runtime": "5m", "jobs": []}
            for index, name in enumerate(roles, start=1)
        ],
        "poll_interval": poll_interval,
        "boot_timeout": "2m",
    }


@contextlib.contextmanager
def airflow_on_fleet(
    work: Path,
    jobs: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    poll_interval: str = "2s",
    scenario: Mapping[str, Any] | None = None,
    **config_kwargs: Any,
) -> Generator[tuple[FleetSimulator, AirflowHarness]]:
    """A simulator for the roles of ``jobs`` and Airflow on it, ``fleet_daily`` parsed and unpaused.

    :param jobs: each role's demo jobs (``fleet_sim.demo_job``), in DAG order
    :param config_kwargs: for :func:`fleet_sim.sim_fleet_config` (``alert_after``, ``heartbeat``, ...)
    """
    fleet = fleet_of(list(jobs), poll_interval=poll_interval)
    with FleetSimulator(fleet_config=fleet, scenario=dict(scenario or SCENARIO), workdir=work / "sim") as sim:
        config_kwargs.setdefault("heartbeat", "2s")
        path = work / "fleet.yaml"
        path.write_text(yaml.safe_dump(sim_fleet_config(fleet, sim, jobs=jobs, **config_kwargs)))
        with AirflowHarness(
            work / "airflow", fleet_config=path, aws_connection=sim.airflow_connection()
        ) as af:
            af.wait_for_dag()
            yield sim, af


def starts_by_date(sim: FleetSimulator, role: str) -> dict[str, list[str]]:
    """``{RUN_DATE the job saw: [job names started]}`` on the role's host (the simulator's record)."""
    seen: dict[str, list[str]] = {}
    for run in demo_runs(sim.host(sim.instance_for(role)).sandbox):
        if run["event"] == "start":
            seen.setdefault(run["date"], []).append(run["job"])
    return seen


def task_log(af: AirflowHarness, run_id: str, task_id: str) -> str:
    """Everything a task of a run logged: each attempt in a worker and each of its triggers."""
    directory = af.home / "logs" / "dag_id=fleet_daily" / f"run_id={run_id}" / f"task_id={task_id}"
    return "\n".join(path.read_text(errors="replace") for path in sorted(directory.glob("attempt=*")))


def wait_for_task(af: AirflowHarness, run_id: str, task_id: str, state: str, timeout: float = 120) -> None:
    """Until the task of the run is in ``state`` (say ``run_agent`` success: the agent is at work)."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = {ti["task_id"]: ti.get("state") for ti in af.task_instances(run_id)}.get(task_id)
        if seen == state:
            return
        time.sleep(0.5)
    raise AssertionError(f"{run_id}: {task_id} not {state} after {timeout} s (last seen: {seen})")
