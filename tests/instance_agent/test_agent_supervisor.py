"""The supervisor's main loop with a fake clock, fake processes, fake IMDS and fake signals."""

from __future__ import annotations

import itertools
import signal
from datetime import timedelta

import pytest
from agent_fakes import Harness, imds_on_the_clock, job


class TestSupervisor:
    def test_jobs_run_in_parallel_and_the_run_ends_with_the_last_one(self, tmp_path):
        harness = Harness(tmp_path, [job("a"), job("b")], a={"exits_at": 4}, b={"exits_at": 9, "code": 3})

        result = harness.run()

        assert result.state == "failed"
        assert harness.clock.seconds == pytest.approx(9, abs=0.6)  # no sleeping after the last job
        state = harness.on_disk()
        assert (state["jobs"]["a"]["status"], state["jobs"]["a"]["exit_code"]) == ("succeeded", 0)
        assert (state["jobs"]["b"]["status"], state["jobs"]["b"]["exit_code"]) == ("failed", 3)
        assert state["state"] == "failed"

    def test_running_is_on_disk_before_the_job_starts(self, tmp_path):
        harness = Harness(tmp_path, [job("a")])

        harness.run()

        before = harness.launcher.recorded_before_start["a"]
        assert before["status"] == "running"
        assert before["attempts"] == 1

    def test_every_job_gets_run_date_and_role(self, tmp_path):
        harness = Harness(tmp_path, [job("a", env={"MODE": "live"})])

        harness.run()

        env = harness.launcher.envs["a"]
        assert (env["RUN_DATE"], env["ROLE"], env["MODE"], env["PATH"]) == (
            "2026-11-23",
            "tasks",
            "live",
            "/usr/bin",
        )

    def test_heartbeats_report_progress_until_the_final_state(self, tmp_path):
        harness = Harness(tmp_path, [job("a", timeout=100), job("b")], a={"exits_at": 10}, b={"exits_at": 4})

        harness.run()

        reports = harness.reporter.reports
        running = [report for report in reports if report.state == "running"]
        beats = sorted({report.heartbeat for report in running})
        assert len(beats) >= 4  # at 0, 3, 6, 9 s, plus one when b ended
        assert all(later - earlier <= timedelta(seconds=3.01) for earlier, later in itertools.pairwise(beats))
        assert {report.progress for report in running} == {"0/2", "1/2"}
        final = reports[-1]
        assert (final.state, final.progress, final.jobs) == ("succeeded", "2/2", {"a": 0, "b": 0})
        assert final.durations == {"a": 10, "b": 4}
        assert (final.role, final.run_date) == ("tasks", "2026-11-23")

    def test_a_timeout_is_sigterm_then_sigkill_after_the_grace(self, tmp_path):
        harness = Harness(tmp_path, [job("a", timeout=5)], a={"exits_at": None, "obeys_term": False})

        harness.run()

        assert harness.signals("a") == [
            (pytest.approx(5, abs=0.01), "SIGTERM"),
            (pytest.approx(7, abs=0.01), "SIGKILL"),
        ]
        record = harness.on_disk()["jobs"]["a"]
        assert (record["status"], record["exit_code"]) == ("timed_out", -9)
        assert harness.supervisor.signals.waits < 30  # 7 s at a 0.5 s tick: no busy loop in the grace

    def test_max_runtime_stops_what_still_runs(self, tmp_path):
        timings = dict(heartbeat_seconds=3, kill_grace_seconds=2, max_runtime=4)
        harness = Harness(
            tmp_path, [job("a"), job("b")], timings=timings, a={"exits_at": 2}, b={"exits_at": None}
        )

        harness.run()

        jobs = harness.on_disk()["jobs"]
        assert jobs["a"]["status"] == "succeeded"
        assert jobs["b"]["status"] == "timed_out"
        assert "max_runtime" in jobs["b"]["reason"]

    def test_a_spot_notice_stops_the_jobs_within_its_deadline(self, tmp_path, imds):
        timings = dict(
            heartbeat_seconds=60, kill_grace_seconds=30, imds_poll_seconds=1, flush_reserve_seconds=20
        )
        harness = Harness(
            tmp_path,
            [job("a"), job("b")],
            timings=timings,
            imds=imds_on_the_clock(imds, spot_at=2, deadline_after=25),
            a={"exits_at": None, "obeys_term": False},
            b={"exits_at": None},
        )

        result = harness.run()

        # 25 s until the stop, 20 s kept for the final flush: SIGKILL 5 s after SIGTERM, not 30.
        assert harness.signals("a") == [(pytest.approx(2), "SIGTERM"), (pytest.approx(7), "SIGKILL")]
        assert harness.signals("b") == [(pytest.approx(2), "SIGTERM")]
        assert result.state == "interrupted"
        state = harness.on_disk()
        assert state["state"] == "interrupted"
        assert {record["status"] for record in state["jobs"].values()} == {"interrupted"}
        assert "spot interruption notice: stop" in state["agent"]["interrupted_by"]
        interrupted = [report for report in harness.reporter.reports if report.state == "interrupted"]
        assert interrupted[0].notice.startswith("spot-stop@")
        assert interrupted[0].progress == "0/2"  # tagged before the jobs were even stopped

    def test_a_rebalance_recommendation_only_tags_and_warns(self, tmp_path, caplog, imds):
        harness = Harness(
            tmp_path, [job("a")], imds=imds_on_the_clock(imds, rebalance_at=1), a={"exits_at": 5}
        )

        with caplog.at_level("WARNING", logger="instance_agent"):
            result = harness.run()

        assert result.state == "succeeded"
        assert harness.signals("a") == []
        assert harness.reporter.reports[-1].notice == "rebalance@2026-11-23T00:00:01Z"
        assert "rebalance recommendation" in caplog.text

    def test_imds_failures_never_stop_the_jobs(self, tmp_path, caplog, imds):
        harness = Harness(tmp_path, [job("a")], imds=imds_on_the_clock(imds, broken=True))

        with caplog.at_level("WARNING", logger="instance_agent"):
            result = harness.run()

        assert result.state == "succeeded"
        # A poll is one request (its token request fails): at 0, 2, 6 s, backing off, not every second.
        assert 2 <= len(imds.log) <= 4
        assert caplog.text.count("cannot poll IMDS") == 1  # warned once, not on every poll

    def test_sigterm_interrupts_and_a_second_one_kills_at_once(self, tmp_path):
        harness = Harness(
            tmp_path,
            [job("a")],
            timings=dict(heartbeat_seconds=60, kill_grace_seconds=30),
            signals_at=[(1, signal.SIGTERM), (3, signal.SIGTERM)],
            a={"exits_at": None, "obeys_term": False},
        )

        result = harness.run()

        assert harness.signals("a") == [
            (pytest.approx(1, abs=0.6), "SIGTERM"),
            (pytest.approx(3, abs=0.6), "SIGKILL"),
        ]
        assert result.interrupted_by == "SIGTERM received"
        assert harness.on_disk()["jobs"]["a"]["status"] == "interrupted"
        assert harness.reporter.reports[-1].notice.startswith("signal-SIGTERM@")

    def test_a_signal_before_the_jobs_start_leaves_them_skipped(self, tmp_path):
        harness = Harness(tmp_path, [job("a"), job("b")], signals_at=[(0, signal.SIGINT)])

        result = harness.run()

        assert result.state == "interrupted"
        assert harness.launcher.processes == {}
        jobs = harness.on_disk()["jobs"]
        assert {name: record["status"] for name, record in jobs.items()} == {"a": "skipped", "b": "skipped"}

    def test_a_job_that_cannot_start_fails_and_the_others_run(self, tmp_path):
        harness = Harness(tmp_path, [job("a"), job("b")], a={"cannot_start": True}, b={"exits_at": 1})

        result = harness.run()

        assert result.state == "failed"
        jobs = harness.on_disk()["jobs"]
        assert (jobs["a"]["status"], jobs["a"]["exit_code"]) == ("failed", 127)
        assert jobs["b"]["status"] == "succeeded"
        assert harness.reporter.reports[-1].jobs == {"a": 127, "b": 0}

    def test_the_final_upload_holds_every_log_and_the_state_file(self, tmp_path):
        harness = Harness(tmp_path, [job("a"), job("b")])

        harness.run()

        names = [name for _, name in harness.reporter.uploads]
        assert names == ["a.log", "b.log", "_agent.log", "state.json"]
        assert harness.reporter.uploads[-1][0] == harness.store.path("2026-11-23")
