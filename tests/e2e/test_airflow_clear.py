"""Clear and the "still running" deadline alert, through the real Airflow components.

Airflow 3.3 answered every Clear of a run whose queued-at deadline was still ahead with HTTP 500
(apache/airflow#70368), and alerted "still running" for runs that had already failed. One story
on one simulated fleet (``alert_after: 40s``), told once by the module's ``story`` fixture so
that the runs' waits overlap (the whole file takes about three minutes):

1. run **B** (2026-11-21, role alpha) fails (``a1`` fails on its first run of a date only) and
   is left failed past its deadline;
2. run **A** (2026-11-20, roles alpha and beta) fails, and alpha's group is cleared at once, as
   the UI's Clear button does, while A's deadline is still ahead; the retry succeeds;
3. run **C** (2026-11-22, role gamma) runs a job longer than ``alert_after``;
4. run B is cleared too, its deadline long missed; the retry succeeds;
5. the components' logs are read once every deadline, and every wait a Clear started, has passed.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow_fleet import airflow_on_fleet

from airflow_harness import AirflowHarness, HarnessError, RunResult, parse
from fleet_sim import FleetSimulator, demo_job, demo_runs

ALERT_AFTER = 40.0
# gamma's job: it starts some seconds after the run was queued, so the run is still going when
# its deadline passes.
LONG_JOB = ALERT_AFTER + 5
ALERT = "FLEET ALERT: fleet_daily still running"


@dataclass
class Cleared:
    """One Clear: when, what the API answered, and where the run's deadline stood then."""

    at: datetime
    seconds_after_failure: float
    deadlines_before: list[dict[str, Any]]
    answer: Any = None
    error: str | None = None
    result: RunResult | None = None


@dataclass
class Story:
    sim: FleetSimulator
    af: AirflowHarness
    runs: dict[str, RunResult] = field(default_factory=dict)
    queued: dict[str, datetime] = field(default_factory=dict)
    clears: dict[str, Cleared] = field(default_factory=dict)
    logs: dict[str, list[str]] = field(default_factory=dict)

    def starts(self, role: str, day: str) -> list[str]:
        """The outcomes of the role's job runs for ``day`` (``exit N``), from the host's record."""
        host = self.sim.host(self.sim.instance_for(role)).sandbox
        return [run["event"] for run in demo_runs(host) if run["date"] == day and run["event"] != "start"]

    def lines(self, *needles: str) -> list[str]:
        return [line for lines in self.logs.values() for line in lines if all(n in line for n in needles)]


def trigger(af: AirflowHarness, story: Story, name: str, day: str, roles: list[str]) -> str:
    run_id = af.trigger(day, {"roles": roles}, run_id=f"clear_{name}_{day}")
    story.runs[name] = af.wait_for_run(run_id, timeout=240)
    run = af.api("GET", f"/api/v2/dags/fleet_daily/dagRuns/{urllib.parse.quote(run_id, safe='')}")
    story.queued[name] = parse(run["queued_at"])
    return run_id


def clear_role(af: AirflowHarness, story: Story, name: str, role: str) -> None:
    """``POST .../clearTaskInstances`` for the role's group, as the UI's Clear of a group sends it."""
    failed = story.runs[name]
    run_id = failed.run_id
    deadlines = af.api("GET", f"/ui/dags/fleet_daily/dagRuns/{run_id}/deadlines")["deadlines"]
    cleared = Cleared(
        at=datetime.now(UTC),
        seconds_after_failure=(datetime.now(UTC) - failed.end_date).total_seconds(),
        deadlines_before=deadlines,
    )
    body = {
        "dry_run": False,
        "dag_run_id": run_id,
        "task_ids": [task for task in failed.tasks if task.startswith(f"{role}.")],
        "include_downstream": True,
        "include_upstream": False,
        "only_failed": False,
        "reset_dag_runs": True,
    }
    try:
        cleared.answer = af.api("POST", "/api/v2/dags/fleet_daily/clearTaskInstances", body)
    except HarnessError as error:
        cleared.error = str(error)
    story.clears[name] = cleared
    if cleared.error is None:
        cleared.result = af.wait_for_run(run_id, timeout=240)


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Iterator[Story]:
    jobs = {
        "alpha": [demo_job("a1", seconds=1, exit_code=1, fail_runs=1)],
        "beta": [demo_job("b1", seconds=1)],
        "gamma": [demo_job("g1", seconds=LONG_JOB, timeout="2m")],
    }
    work = tmp_path_factory.mktemp("airflow-clear")
    with airflow_on_fleet(work, jobs, alert_after=f"{ALERT_AFTER:.0f}s") as (sim, af):
        told = Story(sim, af)
        trigger(af, told, "B", "2026-11-21", ["alpha"])
        trigger(af, told, "A", "2026-11-20", ["alpha", "beta"])
        clear_role(af, told, "A", "alpha")
        trigger(af, told, "C", "2026-11-22", ["gamma"])
        clear_role(af, told, "B", "alpha")
        # Every deadline has passed, and so has alert_after since each Clear made before its
        # run's deadline (the callback of a run queued again waits that long): C's run and
        # B's retry took longer than that already, so this normally waits nothing.
        pending = [c.at for c in told.clears.values() if not any(d["missed"] for d in c.deadlines_before)]
        last = max([*told.queued.values(), *pending])
        time.sleep(max(0.0, last.timestamp() + ALERT_AFTER + 5 - time.time()))
        told.logs = {
            str(log.relative_to(af.home)): log.read_text(errors="replace").splitlines()
            for log in sorted(af.home.rglob("*.log"))
        }
        yield told


def test_a_failed_run_cleared_within_a_minute_is_accepted_and_retries_only_the_failed_job(story):
    failed, cleared = story.runs["A"], story.clears["A"]
    assert failed.state == "failed" and failed.tasks["alpha.report"].state == "failed"
    # What made Airflow answer 500: a queued-at deadline not missed yet.
    assert [d["missed"] for d in cleared.deadlines_before] == [False], cleared.deadlines_before
    assert cleared.seconds_after_failure < 60

    assert cleared.error is None, cleared.error
    assert cleared.result is not None and cleared.result.state == "success"
    assert story.starts("alpha", "2026-11-20") == ["exit 1", "exit 0"]
    assert story.starts("beta", "2026-11-20") == ["exit 0"]
    assert cleared.result.tasks["beta.report"].try_number == failed.tasks["beta.report"].try_number


def test_a_run_failed_when_its_deadline_passed_is_not_alerted_and_a_later_clear_retries_it(story):
    run_id, cleared = story.runs["B"].run_id, story.clears["B"]
    assert story.lines("FLEET deadline: no alert for", run_id, "it had ended failed")
    assert not story.lines("still", run_id, "calling")

    assert [d["missed"] for d in cleared.deadlines_before] == [True], cleared.deadlines_before
    assert cleared.error is None, cleared.error
    assert cleared.result is not None and cleared.result.state == "success"
    assert story.starts("alpha", "2026-11-21") == ["exit 1", "exit 0"]


def test_a_run_still_running_past_alert_after_is_alerted(story):
    run = story.runs["C"]
    assert run.state == "success"
    assert len(story.lines("FLEET deadline:", run.run_id, "still running", "calling")) == 1
    alerts = story.lines(ALERT)
    assert len(alerts) == 1, alerts
    # Alerted while the run went on: after alert_after from its queue, before its end.
    alerted = parse(alerts[0].split()[0].strip("[]"))
    assert story.queued["C"].timestamp() + ALERT_AFTER <= alerted.timestamp() < run.end_date.timestamp()


def test_no_alert_names_a_run_that_had_ended(story):
    # The logs read are the components' (the scheduler's and the triggerer's among them).
    assert all(story.logs.get(name) for name in ("scheduler.log", "triggerer.log")), sorted(story.logs)
    calls = story.lines("FLEET deadline:", "calling")
    assert [story.runs["C"].run_id in line for line in calls] == [True], calls
    # Every alert line came through the check: one notifier call per "calling" line.
    assert len(story.lines(ALERT)) == len(calls)
