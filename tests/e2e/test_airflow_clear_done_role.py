"""The UI's Clear on any task of a day already done, through the real Airflow: nothing runs again.

One run of ``fleet_daily`` succeeds; then each task of a succeeded role (and the signer's pair)
is cleared through ``POST .../clearTaskInstances``, what the UI's Clear button sends, with its
downstream and with its upstream. Each time the run must end ``success`` again, no job may start
again, nothing may boot (the signer included), and every instance must be stopped. Judged from
the simulator's own records, not from what the DAG says.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from airflow_fleet import airflow_on_fleet

from airflow_harness import AirflowHarness
from fleet_sim import FleetSimulator, demo_job, demo_runs

ROLE_STEPS = (
    "skip_if_done",
    "start",
    "wait_running",
    "wait_ssm_online",
    "run_agent",
    "wait_stopped",
    "report",
)
CLEARED = [f"alpha.{step}" for step in ROLE_STEPS] + ["start_signer", "stop_signer"]


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Iterator[tuple[FleetSimulator, AirflowHarness, str]]:
    """A simulator, Airflow on it, and one successful run for 2026-11-23."""
    jobs = {"alpha": [demo_job("a1", seconds=1)], "beta": [demo_job("b1", seconds=1)]}
    scenario = {"transition_delay": 0.3, "registration_delay": 0.5}
    work = tmp_path_factory.mktemp("airflow-clear")
    with airflow_on_fleet(work, jobs, poll_interval="1s", scenario=scenario, heartbeat="1s") as (sim, af):
        first = af.wait_for_run(af.trigger("2026-11-23", run_id="day"), timeout=300)
        assert first.state == "success", first.states()
        yield sim, af, first.run_id


def job_starts(sim: FleetSimulator) -> int:
    hosts = [sim.instance_for(role) for role in ("alpha", "beta")]
    return sum(1 for host in hosts for run in demo_runs(sim.host(host).sandbox) if run["event"] == "start")


def boots(sim: FleetSimulator) -> int:
    return sum(1 for event in sim.timeline(event="state") if event["to"] == "pending")


@pytest.mark.parametrize("direction", ["downstream", "upstream"])
@pytest.mark.parametrize("task_id", CLEARED)
def test_clearing_a_task_of_a_done_day_runs_and_boots_nothing(
    done: Any, task_id: str, direction: str
) -> None:
    sim, af, run_id = done
    starts, booted = job_starts(sim), boots(sim)

    cleared = af.clear(
        run_id,
        [task_id],
        include_downstream=direction == "downstream",
        include_upstream=direction == "upstream",
    )
    again = af.wait_for_run(run_id, timeout=240)

    assert task_id in {ti["task_id"] for ti in cleared}
    assert again.state == "success", {t: s for t, s in again.states().items() if s != "success"}
    assert job_starts(sim) == starts, "a job of a day already done ran again"
    assert boots(sim) == booted, "an instance (worker or signer) was booted for a day already done"
    states = {role: sim.state(sim.instance_for(role)) for role in ("signer", "alpha", "beta")}
    assert set(states.values()) == {"stopped"}, states
