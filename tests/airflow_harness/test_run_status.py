"""A run as the REST API shows it: whether it moves, and the reason it does not (any clock)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from airflow_harness import run_status

NOW = datetime(2026, 12, 2, 4, 10, tzinfo=UTC)
# What Airflow 3.3.2's scheduler logs, twice a second, for a run whose logical date is ahead.
FUTURE_LINE = (
    "[2026-12-02T04:10:03.100+0000] {scheduler_job_runner.py:2926} ERROR - "
    "Logical date is in future: 2026-12-02 12:00:00+00:00"
)


def run(state="running", logical_date="2026-12-02T12:00:00Z", run_id="demo_second_2026-12-02"):
    return {"dag_id": "fleet_daily", "dag_run_id": run_id, "state": state, "logical_date": logical_date}


class TestProgressing:
    @pytest.mark.parametrize(
        ("state", "tis", "expected"),
        [
            ("queued", [{"state": "success", "start_date": "2026-12-02T04:00:00Z"}], False),
            ("running", [], False),
            ("running", [{"state": None}, {"state": "scheduled"}, {"state": "queued"}], False),
            ("running", [{"state": "running", "start_date": "2026-12-02T04:00:00Z"}], True),
            ("running", [{"state": "skipped"}], True),
        ],
    )
    def test_a_run_moves_once_it_left_queued_and_a_task_started(self, state, tis, expected):
        assert run_status.progressing({"state": state}, tis) is expected


class TestWhyStuck:
    def test_a_future_logical_date_is_named_with_the_schedulers_own_words(self):
        reasons = run_status.why_stuck(
            run(), now=NOW, scheduler_lines=["unrelated line", FUTURE_LINE, FUTURE_LINE]
        )

        assert reasons[0].startswith("the scheduler logged: ")
        assert "Logical date is in future: 2026-12-02 12:00:00+00:00" in reasons[0]
        assert reasons[1] == (
            "its logical date 2026-12-02T12:00:00+00:00 is in the future (now 2026-12-02T04:10:00+00:00): "
            "Airflow's scheduler starts no task of a run before its logical date"
        )

    def test_the_same_run_after_its_logical_date_is_not_blamed_on_it(self):
        later = datetime(2026, 12, 2, 12, 1, tzinfo=UTC)

        assert run_status.why_stuck(run(), now=later) == []

    def test_a_paused_dag_and_a_taken_max_active_runs_are_named(self):
        reasons = run_status.why_stuck(
            run(state="queued", logical_date=None),
            now=NOW,
            dag={"dag_id": "fleet_daily", "is_paused": True, "max_active_runs": 1},
            other_runs=[{"dag_run_id": "scheduled__2026-12-02", "state": "running"}],
        )

        assert reasons == [
            "the DAG fleet_daily is paused: Airflow runs nothing of a paused DAG",
            "the DAG's max_active_runs=1 is taken by run(s) scheduled__2026-12-02",
        ]

    def test_only_lines_about_this_run_are_quoted_and_only_the_last_few(self):
        lines = [f"line {n} about demo_second_2026-12-02" for n in range(20)] + ["about another run"]

        (reason,) = run_status.why_stuck(run(logical_date=None), now=NOW, scheduler_lines=lines)

        assert reason.count("about demo_second") == run_status.QUOTED_LOG_LINES
        assert "line 19" in reason and "another run" not in reason


class TestRunResult:
    def test_the_run_date_the_dag_rendered_and_the_day_of_run_after(self):
        result = run_status.run_result(
            {**run(logical_date=None), "run_after": "2026-12-02T04:10:00Z", "state": "success"},
            [
                {"task_id": "a.skip_if_done", "rendered_fields": {"run_date": "2026-12-02"}},
                {"task_id": "a.start", "rendered_fields": {}},
                {"task_id": "a.report"},
            ],
        )

        assert result.run_date == "2026-12-02"
        assert result.rendered_run_date() == "2026-12-02"

    def test_two_different_rendered_dates_are_no_single_run_date(self):
        result = run_status.run_result(
            run(),
            [
                {"task_id": "a.skip_if_done", "rendered_fields": {"run_date": "2026-12-02"}},
                {"task_id": "b.skip_if_done", "rendered_fields": {"run_date": "2026-12-03"}},
            ],
        )

        assert result.rendered_run_date() is None
