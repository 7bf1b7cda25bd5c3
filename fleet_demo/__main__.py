"""``python -m fleet_demo`` (``make demo``): the daily DAG end to end on the simulated fleet.

The fleet simulator runs the shipped fleet config (``dags/fleet.yaml``) with short demo jobs; a
real Airflow (SQLite) runs ``fleet_daily`` on it for one date, then again for the same date the
way a person does with the UI's Trigger button (:mod:`fleet_demo.trigger_plan`). It prints what
each run did per role and draws the first run's timeline. Exit code 0 when the first run
succeeded and the second ran no job and booted no worker; 1 otherwise; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from airflow_harness import AirflowHarness, HarnessError, RunResult
from fleet_demo import trigger_plan
from fleet_demo.summary import RunSummary, render, summarize
from fleet_demo.timeline_svg import render as render_svg
from fleet_demo.timeline_svg import rows_from
from fleet_sim.fleet_config import SIGNER_ROLE, demo_runs, load_fleet_config, sim_fleet_config

REPO = Path(__file__).resolve().parent.parent
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
# Seconds, not the real fleet's minutes: a demo run takes about half a minute.
SCENARIO = {"transition_delay": 1.0, "registration_delay": 2.0}
POLL_INTERVAL = "2s"
# The two runs of the date: the scheduler's, then one like the UI's Trigger button (see trigger_plan).
RUNS = (
    ("demo_first", trigger_plan.first_trigger, "First run"),
    ("demo_second", trigger_plan.second_trigger, "Second run, same date"),
)


def parse_args(argv: list[str] | None, now: datetime | None = None) -> argparse.Namespace:
    """The demo's arguments; ``now`` (default: the clock) decides the default date and its bound."""
    parser = argparse.ArgumentParser(prog="python -m fleet_demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--date", type=_day, help="the run date, up to today (default: today in the fleet's timezone)"
    )
    parser.add_argument(
        "--fleet", type=Path, default=REPO / "dags" / "fleet.yaml", help="the fleet config (%(default)s)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=REPO / ".demo", help="sandboxes, Airflow home, logs (%(default)s)"
    )
    parser.add_argument(
        "--job-seconds", type=_positive, default=3.0, help="how long each demo job runs (%(default)s)"
    )
    parser.add_argument("--failing", nargs="*", default=[], metavar="JOB", help="demo jobs that exit 1")
    parser.add_argument(
        "--timeline", type=Path, help="where to draw the first run (default: WORKDIR/timeline.svg)"
    )
    args = parser.parse_args(argv)
    try:
        config = load_fleet_config(args.fleet)
    except Exception as error:  # the loader names the file and the problem
        parser.error(f"--fleet {args.fleet}: {error}")
    known = {job["name"] for role in config.get("roles") or [] for job in role.get("jobs") or []}
    unknown = sorted(set(args.failing) - known)
    if unknown:
        parser.error(
            f"--failing: no job named {', '.join(map(repr, unknown))} in {args.fleet} "
            f"(jobs: {', '.join(sorted(known))})"
        )
    args.timezone = str(config.get("timezone") or "UTC")
    now = now or datetime.now(UTC)
    args.date = args.date or trigger_plan.today(now, args.timezone)
    try:
        trigger_plan.refuse_future(args.date, now, args.timezone)
    except ValueError as error:
        parser.error(f"--date {args.date}: {error}")
    args.timeline = args.timeline or args.workdir / "timeline.svg"
    return args


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _positive(text: str) -> float:
    with contextlib.suppress(ValueError):
        if (value := float(text)) > 0:
            return value
    raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from fleet_sim import FleetSimulator  # after the arguments: loading moto takes a second

    # A fresh start each time: the demo's "second run" is the one inside this invocation.
    for part in ("sim", "airflow"):
        shutil.rmtree(args.workdir / part, ignore_errors=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    say(f"Starting the fleet simulator with {args.fleet} ...")
    with FleetSimulator(fleet_config=args.fleet, scenario=SCENARIO, workdir=args.workdir / "sim") as sim:
        config = sim_fleet_config(
            args.fleet, sim, job_seconds=args.job_seconds, failing=args.failing, heartbeat="2s"
        )
        config["poll_interval"] = POLL_INTERVAL
        config_path = args.workdir / "fleet.sim.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        roles = {role: ids for role, ids in sim.roles().items() if role != SIGNER_ROLE}
        signer = sim.instance_for(SIGNER_ROLE)
        say("Starting Airflow (db migrate, scheduler, triggerer, dag-processor, api-server) ...")
        airflow = AirflowHarness(
            args.workdir / "airflow", fleet_config=config_path, aws_connection=sim.airflow_connection()
        )
        try:
            with airflow:
                say(f"Airflow is up at {airflow.api_url} (task logs under {airflow.home / 'logs'})")
                airflow.wait_for_dag()
                # Each trigger is planned from the clock at the moment it is made (see trigger_plan).
                done = []
                for name, plan, title in RUNS:
                    trigger = plan(args.date, datetime.now(UTC), args.timezone)
                    done.append(run_once(airflow, sim, args.date, roles, signer, name, trigger))
                    print(render(done[-1], title), flush=True)
                first, second = done
        except HarnessError as error:
            print(f"fleet_demo: Airflow failed: {error}", file=sys.stderr)
            return EXIT_FAILED
        draw(sim, roles, first, args.timeline, f"fleet_daily {args.date}: first run")
    return verdict(first, second)


def run_once(
    airflow: AirflowHarness,
    sim: Any,
    day: date,
    roles: dict[str, list[str]],
    signer: str,
    name: str,
    trigger: trigger_plan.Trigger,
) -> RunSummary:
    """Trigger one run for ``day`` as ``trigger`` says, wait for it, summarize what it did."""
    say(f"Triggering fleet_daily for {day} {trigger.how} ...")
    since = time.time()
    run_id = airflow.trigger(trigger.logical_date, run_id=f"{name}_{day}")
    result: RunResult = airflow.wait_for_run(run_id, timeout=600)
    until = time.time()
    instances = [*(iid for ids in roles.values() for iid in ids), signer]
    starts = {
        iid: sum(
            1
            for run in demo_runs(sim.host(iid).sandbox)
            if run["event"] == "start" and run["date"] == str(day) and since <= run["t"] <= until
        )
        for iid in instances
    }
    return summarize(
        result,
        run_date=str(day),
        triggered=_triggered(trigger, result),
        roles=roles,
        signer_id=signer,
        state_events=sim.timeline(event="state"),
        agent_states={iid: sim.agent_state(iid) for iid in instances},
        job_starts=starts,
        since=since,
        until=until,
    )


def _triggered(trigger: trigger_plan.Trigger, result: RunResult) -> str:
    """How the run was triggered, when Airflow made it (``run_after``), the run date the DAG used."""
    made = f" at {result.run_after.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}" if result.run_after else ""
    return f"{trigger.how}{made}; the DAG's run date: {result.rendered_run_date() or 'none rendered'}"


def draw(sim: Any, roles: dict[str, list[str]], summary: RunSummary, path: Path, title: str) -> None:
    """The run's timeline: the simulator's state changes during the run and the summary's jobs."""
    since, until = summary.since, summary.until
    labels = {summary.signer_id: "signer", **{iid: role for role, ids in roles.items() for iid in ids}}
    jobs = {role.instance_id: role.jobs for role in summary.roles}
    events = [e for e in sim.timeline(event="state") if since <= e["t"] <= until]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_svg(rows_from(labels, events, jobs, until), title))
    say(f"Timeline of the first run: {path}")


def verdict(first: RunSummary, second: RunSummary) -> int:
    problems = [
        f"the {which} run for {run.run_date} ran {run.dag_run_date} instead"
        for which, run in (("first", first), ("second", second))
        if run.date_mismatch
    ]
    if first.result.state != "success":
        problems.append(
            f"the first run {first.result.state}"
            + (f" ({', '.join(first.failed_tasks)})" if first.failed_tasks else "")
        )
    # Once per day: a role that finished must not be booted or run again. A failed role is
    # retried by the second run (its failed jobs run again; its succeeded ones do not).
    done = {role.role for role in first.roles if role.state == "succeeded"}
    again = [role for role in second.roles if role.role in done]
    reran, rebooted = sum(r.executions for r in again), sum(r.boots for r in again)
    if reran:
        problems.append(f"the second run for {second.run_date} ran {reran} finished job(s) again")
    if rebooted:
        problems.append(f"the second run for {second.run_date} booted {rebooted} finished role's VM(s)")
    if problems:
        print("\nDEMO FAILED: " + "; ".join(problems), flush=True)
        return EXIT_FAILED
    print(
        f"\nDEMO OK: every job ran once for {first.run_date}; "
        "the second run ran no finished job and booted no finished role's VM.",
        flush=True,
    )
    return EXIT_OK


def say(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
