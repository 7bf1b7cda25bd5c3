"""One VM never serves two runs at once, with the real scheduler, triggerer and REST API.

A backfill's runs do not count against the DAG's ``max_active_runs=1`` (each backfill has its
own limit, 10 by default), and neither does a backfill run against a manual one: these start
runs that share the fleet at the same time, as a user can through the REST API or the UI, and
check that ``wait_turn`` gives the fleet to one run at a time, every job running once.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from airflow_fleet import airflow_on_fleet, starts_by_date, task_log

from airflow_harness import AirflowHarness, RunResult
from fleet_demo.trigger_plan import second_trigger
from fleet_sim import FleetSimulator, demo_job, demo_runs

ROLES = ("alpha", "beta")
# The tasks of a run that touch a VM: the span of a run on the fleet is from its first to its last.
VM_STEPS = ("start", "wait_running", "wait_ssm_online", "run_agent", "wait_stopped")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[tuple[FleetSimulator, AirflowHarness]]:
    # Jobs long enough that two runs' jobs on one VM would overlap if both were let in.
    jobs = {"alpha": [demo_job("a1", seconds=2)], "beta": [demo_job("b1", seconds=2)]}
    with airflow_on_fleet(tmp_path_factory.mktemp("one-vm-per-run"), jobs, poll_interval="1s") as (sim, af):
        yield sim, af


def dates_in_turn(sim: FleetSimulator, role: str) -> list[str]:
    """The run dates of the jobs on the role's host, in time order, each stretch once."""
    runs = sorted(demo_runs(sim.host(sim.instance_for(role)).sandbox), key=lambda run: run["t"])
    return [day for day, _ in itertools.groupby(run["date"] for run in runs)]


def boots(sim: FleetSimulator, role: str) -> int:
    return sum(1 for event in sim.timeline(sim.instance_for(role), "state") if event["to"] == "running")


def fleet_span(run: RunResult) -> tuple[datetime, datetime]:
    """From the first VM step's start to the last one's end (the signer's included)."""
    steps = [run.tasks[f"{role}.{step}"] for role in ROLES for step in VM_STEPS]
    steps += [run.tasks["start_signer"], run.tasks["stop_signer"]]
    starts = [task.start_date for task in steps if task.start_date]
    ends = [task.end_date for task in steps if task.end_date]
    return min(starts), max(ends)


def test_a_backfill_of_three_dates_ten_at_a_time_runs_each_date_once_one_run_at_a_time(fleet: Any) -> None:
    sim, af = fleet
    dates = ["2026-11-20", "2026-11-21", "2026-11-22"]

    runs = af.wait_for_backfill(af.backfill(dates[0], dates[-1], max_active_runs=10), timeout=300)

    # Before wait_turn: the dates ran at once on the same VMs; a date's report found the other
    # date's tags ("left a report for 2026-11-21, not one for 2026-11-20") and failed.
    assert [(run.run_date, run.state) for run in runs] == [(day, "success") for day in dates]
    for role, job in (("alpha", "a1"), ("beta", "b1")):
        assert starts_by_date(sim, role) == {day: [job] for day in dates}, role
        # One date's jobs at a time on each VM, each VM booted once per date.
        assert sorted(dates_in_turn(sim, role)) == dates, dates_in_turn(sim, role)
        assert boots(sim, role) == 3
    assert boots(sim, "signer") == 3
    # The runs were all going at once (the backfill let ten run), and still took the fleet in turn.
    assert max(run.start_date for run in runs) < min(run.end_date for run in runs)
    spans = sorted(fleet_span(run) for run in runs)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, spans
    waited = [run for run in runs if run.tasks["wait_turn"].deferred]
    assert len(waited) >= 2, [run.tasks["wait_turn"].seen_states for run in runs]
    for run in waited:
        assert run.tasks["wait_turn"].picked_by_triggerer
        assert "waits for its turn on the fleet: backfill__2026-11-2" in task_log(af, run.run_id, "wait_turn")
    assert {sim.state(sim.instance_for(role)) for role in (*ROLES, "signer")} == {"stopped"}


def test_a_manual_run_while_a_run_of_its_date_is_on_the_fleet_waits_then_finds_the_date_done(
    fleet: Any,
) -> None:
    sim, af = fleet
    day = datetime.now(UTC).date()
    backfill = af.backfill(day, day)
    first = wait_for_the_fleet(af, backfill, day)

    # As the UI's Trigger button does (no logical date), unless the day ends within a minute:
    # then with the day's noon (fleet_demo.trigger_plan), so that the run date stays `day`.
    manual = af.trigger(second_trigger(day, datetime.now(UTC), "UTC").logical_date)
    second = af.wait_for_run(manual, timeout=240)
    (first_result,) = af.wait_for_backfill(backfill, timeout=240)

    assert (first_result.state, second.state) == ("success", "success")
    assert second.rendered_run_date() == first_result.rendered_run_date() == day.isoformat()
    for role, job in (("alpha", "a1"), ("beta", "b1")):
        assert starts_by_date(sim, role)[day.isoformat()] == [job], role
        # The manual run waited until the first had left the fleet, then found the date done.
        assert second.tasks[f"{role}.skip_if_done"].state == "skipped"
    assert (second.tasks["start_signer"].state, second.tasks["stop_signer"].state) == ("skipped", "success")
    assert second.tasks["wait_turn"].deferred and second.tasks["wait_turn"].picked_by_triggerer
    assert second.tasks["wait_turn"].end_date >= fleet_span(first_result)[1]
    held = f"waits for its turn on the fleet: {first} (holds the fleet"
    assert held in task_log(af, manual, "wait_turn"), task_log(af, manual, "wait_turn")
    assert {sim.state(sim.instance_for(role)) for role in (*ROLES, "signer")} == {"stopped"}


def wait_for_the_fleet(af: AirflowHarness, backfill: int, day: date, timeout: float = 120) -> str:
    """The backfill's run for ``day`` once it has booted a worker (it is on the fleet); its id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in af.backfill_runs(backfill):
            states = {ti["task_id"]: ti.get("state") for ti in af.task_instances(run["dag_run_id"])}
            if states.get("alpha.start") == "success":
                return run["dag_run_id"]
        time.sleep(0.5)
    raise AssertionError(f"backfill {backfill} for {day} booted no worker in {timeout} s")
