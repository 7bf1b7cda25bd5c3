"""fleet_daily through the real Airflow: scheduler, triggerer, DAG processor and API server.

These start Airflow's components as subprocesses (fleet_demo.harness) against the fleet
simulator, the way a user runs them, and drive them through the REST API and the demo's CLI.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet_demo.harness import AirflowHarness, HarnessError
from fleet_sim import FleetSimulator, demo_job, demo_runs, sim_fleet_config

REPO = Path(__file__).resolve().parents[2]
FLEET = {
    "timezone": "UTC",
    "schedule": "0 0 * * *",
    "region": "us-east-1",
    "signer": {"instance": "i-00000000000000000"},
    "roles": [
        {"name": "alpha", "instance": "i-00000000000000001", "max_runtime": "5m", "jobs": [{"name": "a1"}]},
        {"name": "beta", "instance": "i-00000000000000002", "max_runtime": "5m", "jobs": [{"name": "b1"}]},
    ],
    "poll_interval": "2s",
    "boot_timeout": "2m",
}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[tuple[FleetSimulator, AirflowHarness]]:
    work = tmp_path_factory.mktemp("airflow-components")
    scenario = {"transition_delay": 0.5, "registration_delay": 1.0}
    with FleetSimulator(fleet_config=FLEET, scenario=scenario, workdir=work / "sim") as sim:
        jobs = {"alpha": [demo_job("a1", seconds=1)], "beta": [demo_job("b1", seconds=1)]}
        config = sim_fleet_config(FLEET, sim, jobs=jobs, heartbeat="2s")
        path = work / "fleet.yaml"
        path.write_text(yaml.safe_dump(config))
        with AirflowHarness(
            work / "airflow", fleet_config=path, aws_connection=sim.airflow_connection()
        ) as af:
            af.wait_for_dag()
            yield sim, af


def runs_by_date(sim: FleetSimulator, role: str) -> dict[str, list[str]]:
    """``{RUN_DATE the job saw: [job names started]}`` on the role's host."""
    seen: dict[str, list[str]] = {}
    for run in demo_runs(sim.host(sim.instance_for(role)).sandbox):
        if run["event"] == "start":
            seen.setdefault(run["date"], []).append(run["job"])
    return seen


def test_a_backfill_of_two_past_dates_runs_each_dates_jobs_once_with_that_date(fleet: Any) -> None:
    sim, af = fleet

    runs = af.wait_for_backfill(af.backfill("2026-11-20", "2026-11-21"), timeout=600)

    assert [(run.run_date, run.run_type, run.state) for run in runs] == [
        ("2026-11-20", "backfill", "success"),
        ("2026-11-21", "backfill", "success"),
    ]
    assert runs_by_date(sim, "alpha") == {"2026-11-20": ["a1"], "2026-11-21": ["a1"]}
    assert runs_by_date(sim, "beta") == {"2026-11-20": ["b1"], "2026-11-21": ["b1"]}
    for run in runs:
        # The waits gave their worker slots back and a triggerer ran them.
        waits = [run.tasks[f"{role}.wait_stopped"] for role in ("alpha", "beta")]
        assert all(task.picked_by_triggerer for task in waits), [t.seen_states for t in waits]
        assert run.tasks["stop_signer"].state == "success"
        report = af.xcom(run.run_id, "alpha.report")
        assert report["a1"]["outcome"] == 0
    assert sim.state(sim.instance_for("signer")) == "stopped"
    assert {sim.state(sim.instance_for(role)) for role in ("alpha", "beta")} == {"stopped"}


def test_a_triggered_run_for_a_date_already_done_boots_nothing_and_runs_nothing(fleet: Any) -> None:
    sim, af = fleet
    first = af.wait_for_run(af.trigger("2026-11-23"), timeout=300)
    booted = {role: len(sim.timeline(sim.instance_for(role), "state")) for role in ("alpha", "signer")}

    again = af.wait_for_run(af.trigger("2026-11-23T12:00:00+00:00"), timeout=300)

    assert (first.state, again.state) == ("success", "success")
    assert runs_by_date(sim, "alpha")["2026-11-23"] == ["a1"]
    assert runs_by_date(sim, "beta")["2026-11-23"] == ["b1"]
    # Neither the done worker nor the signer changed state: nothing was booted.
    assert {role: len(sim.timeline(sim.instance_for(role), "state")) for role in booted} == booted
    assert again.tasks["alpha.skip_if_done"].state == "skipped"
    assert again.tasks["alpha.start"].state == "skipped"
    assert (again.tasks["start_signer"].state, again.tasks["stop_signer"].state) == ("skipped", "success")


def test_make_demo_runs_the_shipped_fleet_twice_and_prints_a_summary(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleet_demo",
            "--workdir",
            str(tmp_path),
            "--date",
            "2026-11-23",
            "--job-seconds",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )

    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "== First run: run demo_first_2026-11-23, run date 2026-11-23: SUCCESS" in out
    for role, job in (
        ("tasks", "backoffice"),
        ("hyperliquid", "hyperliquid_evolution"),
        ("uniswap", "uniswap"),
    ):
        assert f"  {role:<12} i-" in out
        assert f"      {job:<24} succeeded   exit   0" in out
    second = out.split("== Second run, same date")[1]
    assert second.count("skipped (done for 2026-11-23); booted 0x, 0 job run(s)") == 3
    assert "signer       i-" in second and "booted 0x" in second.split("signer", 1)[1]
    assert "DEMO OK" in out
    svg = (tmp_path / "timeline.svg").read_text()
    assert svg.startswith("<svg") and "backoffice" in svg and "signer" in svg


def test_run_params_are_validated_on_trigger_and_force_with_roles_reruns_only_those(fleet: Any) -> None:
    sim, af = fleet
    with pytest.raises(HarnessError, match=r"HTTP 400.*nope"):
        af.trigger("2026-11-24", {"roles": ["nope"]})
    first = af.wait_for_run(af.trigger("2026-11-24"), timeout=300)

    forced = af.wait_for_run(
        af.trigger("2026-11-24T12:00:00+00:00", {"force": True, "roles": ["beta"]}), timeout=300
    )

    assert (first.state, forced.state) == ("success", "success")
    assert runs_by_date(sim, "beta")["2026-11-24"] == ["b1", "b1"]
    assert runs_by_date(sim, "alpha")["2026-11-24"] == ["a1"]
    assert forced.tasks["alpha.skip_if_done"].state == "skipped"
    assert forced.tasks["beta.report"].state == "success"
