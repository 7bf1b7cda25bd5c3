"""fleet_daily through the real Airflow: scheduler, triggerer, DAG processor and API server.

These start Airflow's components as subprocesses (airflow_harness) against the fleet
simulator, the way a user runs them, and drive them through the REST API and the demo's CLI.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow_fleet import airflow_on_fleet, starts_by_date

from airflow_harness import AirflowHarness, HarnessError
from fleet_sim import FleetSimulator, demo_job

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[tuple[FleetSimulator, AirflowHarness]]:
    jobs = {"alpha": [demo_job("a1", seconds=1)], "beta": [demo_job("b1", seconds=1)]}
    with airflow_on_fleet(tmp_path_factory.mktemp("airflow-components"), jobs) as (sim, af):
        yield sim, af


def test_a_backfill_of_two_past_dates_runs_each_dates_jobs_once_with_that_date(fleet: Any) -> None:
    sim, af = fleet

    runs = af.wait_for_backfill(af.backfill("2026-11-20", "2026-11-21"), timeout=600)

    assert [(run.run_date, run.run_type, run.state) for run in runs] == [
        ("2026-11-20", "backfill", "success"),
        ("2026-11-21", "backfill", "success"),
    ]
    assert starts_by_date(sim, "alpha") == {"2026-11-20": ["a1"], "2026-11-21": ["a1"]}
    assert starts_by_date(sim, "beta") == {"2026-11-20": ["b1"], "2026-11-21": ["b1"]}
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
    assert starts_by_date(sim, "alpha")["2026-11-23"] == ["a1"]
    assert starts_by_date(sim, "beta")["2026-11-23"] == ["b1"]
    # Neither the done worker nor the signer changed state: nothing was booted.
    assert {role: len(sim.timeline(sim.instance_for(role), "state")) for role in booted} == booted
    assert again.tasks["alpha.skip_if_done"].state == "skipped"
    assert again.tasks["alpha.start"].state == "skipped"
    assert (again.tasks["start_signer"].state, again.tasks["stop_signer"].state) == ("skipped", "success")


def demo(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m fleet_demo`` (what ``make demo`` runs) with one-second jobs."""
    return subprocess.run(
        [sys.executable, "-m", "fleet_demo", "--workdir", str(workdir), "--job-seconds", "1", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_make_demo_runs_the_shipped_fleet_twice_and_prints_a_summary(tmp_path) -> None:
    result = demo(tmp_path, "--date", "2026-11-23")

    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "triggered as the scheduler does, with logical date 2026-11-23T00:00:00+00:00" in out
    assert (
        "triggered with logical date 2026-11-23T12:00:00+00:00 (a past date: a run without one would be "
        "for today)"
    ) in out
    assert out.count("the DAG's run date: 2026-11-23") == 2
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


def test_make_demo_without_a_date_runs_today_at_whatever_hour_it_is(tmp_path) -> None:
    """What a new user types: the default date, today, and a second run like the UI's button."""
    before = datetime.now(UTC).date().isoformat()
    result = demo(tmp_path)
    after = datetime.now(UTC).date().isoformat()

    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    day = out.split("== First run: run demo_first_", 1)[1][:10]
    assert day in (before, after)
    assert f"triggered as the scheduler does, with logical date {day}T00:00:00+00:00" in out
    second = out.split("== Second run, same date", 1)[1]
    # In the day's last minute the second run names its date instead (trigger_plan.ROLLOVER_MARGIN).
    assert "like the UI's Trigger button (no logical date)" in second or "ends within a minute" in second
    assert out.count(f"the DAG's run date: {day}") == 2
    assert second.count(f"skipped (done for {day}); booted 0x, 0 job run(s)") == 3
    assert "DEMO OK" in out


def test_run_params_are_validated_on_trigger_and_force_with_roles_reruns_only_those(fleet: Any) -> None:
    sim, af = fleet
    with pytest.raises(HarnessError, match=r"HTTP 400.*nope"):
        af.trigger("2026-11-24", {"roles": ["nope"]})
    first = af.wait_for_run(af.trigger("2026-11-24"), timeout=300)

    forced = af.wait_for_run(
        af.trigger("2026-11-24T12:00:00+00:00", {"force": True, "roles": ["beta"]}), timeout=300
    )

    assert (first.state, forced.state) == ("success", "success")
    assert starts_by_date(sim, "beta")["2026-11-24"] == ["b1", "b1"]
    assert starts_by_date(sim, "alpha")["2026-11-24"] == ["a1"]
    assert forced.tasks["alpha.skip_if_done"].state == "skipped"
    assert forced.tasks["beta.report"].state == "success"


def test_a_run_that_cannot_start_ends_the_wait_early_with_the_schedulers_reason(fleet: Any) -> None:
    """A logical date ahead of now: the scheduler never starts a task; the wait says so at once."""
    _, af = fleet
    ahead = datetime.now(UTC) + timedelta(days=2)
    run_id = af.trigger(ahead, run_id="ahead_of_now")
    began = time.monotonic()
    try:
        with pytest.raises(HarnessError) as stuck:
            af.wait_for_run(run_id, timeout=300, stall_after=15)
        waited = time.monotonic() - began
    finally:
        # The stuck run holds the DAG's one active run: end it for the tests that come after.
        af.api("PATCH", f"/api/v2/dags/fleet_daily/dagRuns/{run_id}", {"state": "failed"})

    message = str(stuck.value)
    assert waited < 60, message
    assert "still running after" in message and "with no task started" in message
    assert f"its logical date {ahead.isoformat()} is in the future" in message
    assert "the scheduler logged: " in message and "Logical date is in future" in message
