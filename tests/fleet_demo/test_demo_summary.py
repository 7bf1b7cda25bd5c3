"""The demo's per-role summary, its verdict, its timeline picture and its arguments."""

from __future__ import annotations

import pytest

from airflow_harness import run_status
from fleet_demo.__main__ import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, parse_args, verdict
from fleet_demo.summary import JobOutcome, idle_seconds, render, summarize
from fleet_demo.timeline_svg import render as render_svg
from fleet_demo.timeline_svg import rows_from

T0 = 1_795_000_000.0  # any Unix time


def iso(seconds_after_t0: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(T0 + seconds_after_t0, UTC).isoformat().replace("+00:00", "Z")


def state(instance_id: str, to: str, at: float) -> dict:
    return {"instance_id": instance_id, "to": to, "t": T0 + at}


def agent(date: str, **jobs: tuple[float, float, int]) -> dict:
    return {
        "date": date,
        "jobs": {
            name: {
                "status": "succeeded" if code == 0 else "failed",
                "exit_code": code,
                "started_at": iso(start),
                "ended_at": iso(end),
            }
            for name, (start, end, code) in jobs.items()
        },
    }


EVENTS = [
    state("i-s", "pending", 0),
    state("i-s", "running", 1),
    state("i-a", "pending", 2),
    state("i-a", "running", 3),
    state("i-a", "stopping", 10.5),
    state("i-a", "stopped", 11),
    state("i-b1", "pending", 2),  # the first candidate boots, then falls to a capacity error
    state("i-b1", "stopped", 2.2),
    state("i-b2", "pending", 3),
    state("i-b2", "running", 4),
    state("i-b2", "stopping", 12.25),
    state("i-b2", "stopped", 13),
    state("i-s", "stopping", 15),
    state("i-s", "stopped", 16),
]


def summary(run_state="success", task_states=None, selected=None, **overrides):
    """The summary of run r1 (16 s long; ``selected``: its ``roles`` param) on the events above."""
    run = {"dag_id": "fleet_daily", "dag_run_id": "r1", "state": run_state, "start_date": iso(0)}
    run.update(end_date=iso(16), conf={"roles": selected} if selected else {})
    states = task_states or {"a.report": "success", "b.report": "success"}
    result = run_status.run_result(run, [{"task_id": task, "state": s} for task, s in states.items()])
    arguments = {
        "run_date": "2026-11-23",
        "roles": {"a": ["i-a"], "b": ["i-b1", "i-b2"]},
        "signer_id": "i-s",
        "state_events": EVENTS,
        "agent_states": {
            "i-a": agent("2026-11-23", j1=(4, 10, 0), j2=(4, 8, 0)),
            "i-b2": agent("2026-11-23", j3=(5, 12, 0)),
        },
        "job_starts": {"i-a": 2, "i-b2": 1},
        "since": T0,
        "until": T0 + 20,
    }
    arguments.update(overrides)
    return summarize(result, **arguments)


class TestSummarize:
    def test_each_role_gets_its_instance_jobs_boots_and_idle_tail(self):
        result = summary()

        a, b = result.roles
        assert (a.role, a.instance_id, a.state, a.boots, a.executions) == ("a", "i-a", "succeeded", 1, 2)
        assert [(j.name, j.exit_code, j.seconds) for j in a.jobs] == [("j1", 0, 6.0), ("j2", 0, 4.0)]
        assert a.idle_seconds == pytest.approx(0.5)  # last job end 10 -> stopping 10.5
        # The candidate that booted and ran is the one shown; both boots count.
        assert (b.instance_id, b.boots, b.idle_seconds) == ("i-b2", 2, pytest.approx(0.25))

    def test_signer_lag_is_last_worker_stopped_to_signer_stopping(self):
        result = summary()
        assert (result.signer_boots, result.signer_lag) == (
            1,
            pytest.approx(2.0),
        )  # b2 stopped at 13, signer stopping at 15

    def test_events_and_jobs_outside_the_run_window_do_not_count(self):
        result = summary(since=T0 + 14, until=T0 + 20, job_starts={})

        assert [(role.boots, role.jobs, role.idle_seconds) for role in result.roles] == [(0, (), None)] * 2
        assert (result.signer_boots, result.signer_lag) == (0, None)
        assert sum(role.boots + role.executions for role in result.roles) == 0

    def test_an_agent_state_of_another_date_is_not_this_runs(self):
        result = summary(agent_states={"i-a": agent("2026-11-22", j1=(4, 10, 0))})
        assert result.roles[0].jobs == ()

    @pytest.mark.parametrize(
        ("states", "conf_roles", "expected"),
        [
            ({"a.report": "failed"}, None, "failed"),
            ({"a.report": "upstream_failed"}, None, "failed"),
            ({"a.report": "skipped", "a.skip_if_done": "skipped"}, None, "skipped (done for 2026-11-23)"),
            (
                {"a.report": "skipped", "a.skip_if_done": "skipped"},
                ["b"],
                "skipped (not in this run's roles)",
            ),
        ],
    )
    def test_the_role_state_comes_from_its_report_and_skip_tasks(self, states, conf_roles, expected):
        result = summary(task_states=states, selected=conf_roles)
        assert result.roles[0].state == expected

    def test_failed_tasks_are_listed(self):
        result = summary(
            run_state="failed", task_states={"a.report": "failed", "b.wait_stopped": "upstream_failed"}
        )
        assert result.failed_tasks == ("a.report", "b.wait_stopped")
        assert result.result.state == "failed"


def test_idle_is_measured_to_the_first_stopping_after_the_last_job():
    events = [state("i-a", "stopping", 1), state("i-a", "stopping", 9)]
    assert idle_seconds(events, "i-a", T0 + 5) == pytest.approx(4.0)
    assert idle_seconds(events, "i-a", None) is None
    assert idle_seconds(events, "i-a", T0 + 10) is None


def test_render_shows_every_role_job_and_the_signer():
    text = render(summary(), "First run")

    assert text.splitlines()[0] == "== First run: run r1, run date 2026-11-23: SUCCESS in 16.0 s"
    assert "  a            i-a  succeeded; booted 1x, 2 job run(s), idle 0.50 s" in text
    assert "      j1                       succeeded   exit   0  6.0 s" in text
    assert "  signer       i-s  booted 1x, stop lag 2.00 s after the last worker stopped" in text
    assert "worker idle: median 0.38 s, max 0.50 s" in text


class TestVerdict:
    def test_ok_when_the_first_run_succeeded_and_the_second_did_nothing(self, capsys):
        second = summary(since=T0 + 14, job_starts={})
        assert verdict(summary(), second) == EXIT_OK
        assert "DEMO OK" in capsys.readouterr().out

    def test_fails_naming_every_problem(self, capsys):
        first = summary(run_state="failed", task_states={"a.report": "failed", "b.report": "success"})
        second = summary()  # it booted both roles' VMs and ran their jobs again

        assert verdict(first, second) == EXIT_FAILED
        out = capsys.readouterr().out
        assert "the first run failed (a.report)" in out
        # b had finished: its re-run is the once-per-day breach; a's (it failed) is its retry.
        assert "ran 1 finished job(s) again" in out
        assert "booted 2 finished role's VM(s)" in out

    def test_a_failed_role_run_again_by_the_second_run_is_its_retry(self, capsys):
        first = summary(task_states={"a.report": "failed", "b.report": "success"})
        second = summary(job_starts={"i-a": 2}, state_events=EVENTS[:4])  # only a booted and ran

        # (the first run's state is left `success` to look at the once-per-day count alone)
        assert verdict(first, second) == EXIT_OK


def test_the_timeline_has_a_row_per_instance_with_jobs_and_the_idle_tail():
    jobs = {"i-a": [JobOutcome("j1", "succeeded", 0, 6.0, T0 + 4, T0 + 10)]}
    jobs["i-a"] += [
        JobOutcome("j2", "failed", 1, 4.0, T0 + 4, T0 + 8),
        JobOutcome("j3", "running", None, None),
    ]
    rows = rows_from({"i-s": "signer", "i-a": "a"}, EVENTS, jobs, until=T0 + 20)

    assert [row.label for row in rows] == ["signer  i-s", "a  i-a"]
    assert [(kind, a - T0, b - T0) for kind, a, b in rows[1].spans] == [
        ("booting", 2, 3),
        ("running", 3, 10),
        ("idle", 10, 10.5),
        ("stopping", 10.5, 11),
    ]
    svg = render_svg(rows, "a <run>")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "a &lt;run&gt;" in svg  # escaped
    assert svg.count("<title>j1 6.0 s</title>") == 1 and "#d9534f" in svg  # j2 failed: red


class TestArguments:
    def test_defaults(self, tmp_path):
        args = parse_args(["--workdir", str(tmp_path)])
        assert args.timeline == tmp_path / "timeline.svg"
        assert args.job_seconds == pytest.approx(3.0)

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["--date", "2026-11-23; rm -rf /"], "--date: not a date (YYYY-MM-DD): '2026-11-23; rm -rf /'"),
            (["--job-seconds", "-1"], "--job-seconds: not a positive number of seconds: '-1'"),
            (["--failing", "nope"], "--failing: no job named 'nope'"),
            (["--fleet", "/nonexistent.yaml"], "--fleet /nonexistent.yaml:"),
        ],
    )
    def test_bad_arguments_are_named_and_exit_2(self, argv, message, capsys):
        with pytest.raises(SystemExit) as exit_:
            parse_args(argv)
        assert exit_.value.code == EXIT_BAD_INPUT
        assert message in capsys.readouterr().err
