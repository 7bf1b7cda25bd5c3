"""A Clear of an ended run while another run is on the fleet, through the real Airflow components.

A cleared run used to act on its old turn: its ``wait_turn`` still read ``success``, so its
cleared steps booted, sent and stopped at once, and its ``stop_signer`` stopped the signer under
the run that had the fleet by then. One story on one simulated fleet, told once by the module's
``story`` fixture (about three minutes), judged from the simulator's own records:

1. run **A** (2026-11-20, role alpha) fails (``a1`` fails on its first run of a date);
2. run **B** (a backfill of 2026-11-21, role beta) takes the fleet; while its ``b1`` runs (the signer up for
   it), A's alpha group is cleared, as the UI's Clear of a group sends it: ``wait_turn`` is a
   setup, so it is cleared too and waits for B;
3. run **C** (a backfill of 2026-11-22, role beta) takes the fleet; while its ``b1`` runs, A's ``stop_signer``
   alone is cleared (a Clear that leaves ``wait_turn`` out): the step itself waits for C.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from airflow_fleet import airflow_on_fleet, task_log, wait_for_task

from airflow_harness import AirflowHarness, RunResult
from fleet_sim import FleetSimulator, demo_job, demo_runs

# Long enough that a cleared run acting at once would stop the signer in the middle of it.
HOLDER_JOB_SECONDS = 15
A, B, C = "clear_after_turn_A", "B", "C"


@dataclass
class Story:
    sim: FleetSimulator
    af: AirflowHarness
    runs: dict[str, RunResult] = field(default_factory=dict)
    first_a: RunResult | None = None
    holders: dict[str, str] = field(default_factory=dict)

    def job_runs(self, role: str, day: str) -> list[dict[str, Any]]:
        return [
            run for run in demo_runs(self.sim.host(self.sim.instance_for(role)).sandbox) if run["date"] == day
        ]

    def signer_stops_during(self, role: str, day: str) -> list[dict[str, Any]]:
        """The signer's moves away from ``running`` while the role's job for ``day`` ran."""
        runs = self.job_runs(role, day)
        began = min(run["t"] for run in runs if run["event"] == "start")
        ended = max(run["t"] for run in runs if run["event"].startswith("exit"))
        return [
            event
            for event in self.sim.timeline(self.sim.instance_for("signer"), "state")
            if began <= event["t"] <= ended and event["to"] != "running"
        ]


def hold_the_fleet_and_clear(story: Story, holder: str, day: str, clear: dict[str, Any]) -> None:
    """A backfill of ``day`` (role beta); once its agent is at work, clear run A as ``clear`` says.

    A backfill, because its run does not count against the DAG's ``max_active_runs=1``: a
    manual holder would keep the cleared run queued by itself, and prove nothing.
    """
    af = story.af
    backfill = af.backfill(day, day, {"roles": ["beta"]})
    story.holders[holder] = run_id = f"backfill__{day}T00:00:00+00:00"
    wait_for_task(af, run_id, "beta.run_agent", "success", timeout=180)
    af.clear(A, **clear)
    (story.runs[holder],) = af.wait_for_backfill(backfill, timeout=240)
    story.runs[f"A after {holder}"] = af.wait_for_run(A, timeout=240)


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Iterator[Story]:
    jobs = {
        "alpha": [demo_job("a1", seconds=1, exit_code=1, fail_runs=1)],
        "beta": [demo_job("b1", seconds=HOLDER_JOB_SECONDS)],
    }
    work = tmp_path_factory.mktemp("airflow-clear-after-turn")
    with airflow_on_fleet(work, jobs, poll_interval="1s", heartbeat="1s") as (sim, af):
        told = Story(sim, af)
        told.first_a = af.wait_for_run(af.trigger("2026-11-20", {"roles": ["alpha"]}, run_id=A), timeout=240)
        group = [task for task in told.first_a.tasks if task.startswith("alpha.")]
        hold_the_fleet_and_clear(told, B, "2026-11-21", {"task_ids": group, "include_downstream": True})
        hold_the_fleet_and_clear(told, C, "2026-11-22", {"task_ids": ["stop_signer"]})
        yield told


def test_a_cleared_role_group_takes_the_turn_again_and_waits_for_the_run_on_the_fleet(story):
    assert story.first_a.state == "failed" and story.first_a.tasks["alpha.report"].state == "failed"
    holder, again = story.runs[B], story.runs[f"A after {B}"]

    assert (holder.state, again.state) == ("success", "success")
    # Only the failed job ran again, and only once B had left the fleet.
    outcomes = [run["event"] for run in story.job_runs("alpha", "2026-11-20") if run["event"] != "start"]
    assert outcomes == ["exit 1", "exit 0"]
    assert again.tasks["alpha.start"].start_date >= holder.end_date
    assert story.signer_stops_during("beta", "2026-11-21") == []
    log = task_log(story.af, A, "wait_turn")
    assert f"waits for its turn on the fleet: {story.holders[B]} (holds the fleet" in log, log


def test_a_cleared_stop_signer_alone_waits_until_the_run_on_the_fleet_has_ended(story):
    holder, again = story.runs[C], story.runs[f"A after {C}"]

    assert (holder.state, again.state) == ("success", "success")
    assert story.signer_stops_during("beta", "2026-11-22") == []
    assert again.tasks["stop_signer"].end_date >= holder.end_date
    log = task_log(story.af, A, "stop_signer")
    assert (
        "was cleared after it took its turn on the fleet" in log
        and f"{story.holders[C]} (holds the fleet" in log
    ), log
    # Nothing else of A ran again, and every instance is stopped.
    assert [run["event"] for run in story.job_runs("alpha", "2026-11-20")].count("start") == 2
    assert {story.sim.state(story.sim.instance_for(role)) for role in ("signer", "alpha", "beta")} == {
        "stopped"
    }
