"""Demo jobs that fail on their first run for a date only, and ``serve``'s config options.

A job that fails once lets a test (or a person trying the DAG out) retry a failed day with a
Clear and see it succeed; ``--poll-interval`` makes the written config poll as fast as the
simulator answers.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace

import yaml
from fleet_sim_testing import serving

from fleet_sim import demo_job, demo_runs, sim_fleet_config


def run_job(job: dict, home: Path, run_date: str) -> int:
    """One run of a demo job, as the agent starts it (``RUN_DATE``, ``ROLE``, ``HOME``)."""
    env = {**os.environ, "HOME": str(home), "RUN_DATE": run_date, "ROLE": "alpha"}
    return subprocess.run(job["argv"], env=env, capture_output=True, timeout=30, check=False).returncode


def test_a_job_failing_once_fails_its_first_run_of_each_date_and_succeeds_after(tmp_path):
    job = demo_job("a1", seconds=0.1, exit_code=3, fail_runs=1)

    codes = [run_job(job, tmp_path, day) for day in ("2026-11-20", "2026-11-20", "2026-11-21", "2026-11-20")]

    assert codes == [3, 0, 3, 0]
    assert [(run["date"], run["event"]) for run in demo_runs(tmp_path) if run["event"] != "start"] == [
        ("2026-11-20", "exit 3"),
        ("2026-11-20", "exit 0"),
        ("2026-11-21", "exit 3"),
        ("2026-11-20", "exit 0"),
    ]


def test_sim_fleet_config_makes_the_failing_once_jobs_fail_once():
    sim = SimpleNamespace(
        config=None, region="us-east-1", instance_for=lambda role: "i-00000000000000001", instances_for=list
    )
    base = {
        "signer": {"instance": "i-00000000000000000"},
        "roles": [{"name": "alpha", "instance": "i-1", "jobs": [{"name": "a1"}, {"name": "a2"}]}],
    }

    config = sim_fleet_config(base, sim, failing_once=["a1"])

    a1, a2 = config["roles"][0]["jobs"]
    assert a1["argv"][-2:] == ["1", "1"]  # exit code 1, on the first run only
    assert a2["argv"][-1] == "0"


def test_serve_writes_the_poll_interval_and_the_failing_once_jobs_it_is_given(tmp_path):
    written = tmp_path / "fleet.yaml"
    options = ("--write-config", str(written), "--poll-interval", "2s", "--failing-once", "uniswap")
    with serving(tmp_path, *options) as (process, ready):
        assert ready["config"] == str(written)
        config = yaml.safe_load(written.read_text())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0

    assert config["poll_interval"] == "2s"
    jobs = {job["name"]: job for role in config["roles"] for job in role["jobs"]}
    assert jobs["uniswap"]["argv"][-2:] == ["1", "1"]
    assert jobs["backoffice"]["argv"][-1] == "0"
