"""The old scripts' timing model: shutdown checks, the Lambda's limit, the spread of first sleeps."""

from __future__ import annotations

import pytest

from bench.old_scripts_model import (
    JobSpan,
    model,
    shutdown_time,
    signer_stop_time,
    spread_first_sleeps,
)


class TestShutdownTime:
    def test_a_job_shorter_than_the_first_sleep_stops_at_the_first_check(self):
        assert shutdown_time(JobSpan(10, 15), first_sleep=300) == 310

    def test_a_longer_job_stops_at_the_first_ps_check_after_its_end(self):
        # Checks at 310, 610, 910: the job ends at 700, so the 910 check finds nothing.
        assert shutdown_time(JobSpan(10, 700), first_sleep=300) == 910

    def test_a_job_ending_exactly_at_a_check_stops_then(self):
        assert shutdown_time(JobSpan(0, 600), first_sleep=300) == 600

    def test_the_poll_interval_is_a_parameter(self):
        assert shutdown_time(JobSpan(0, 350), first_sleep=300, ps_poll=60) == 360


class TestSpread:
    def test_first_sleeps_are_the_midpoints_of_equal_slices_of_the_range(self):
        assert spread_first_sleeps(3) == [400.0, 600.0, 800.0]
        assert spread_first_sleeps(1) == [600.0]

    def test_no_worker_is_an_error(self):
        with pytest.raises(ValueError, match="at least one worker"):
            spread_first_sleeps(0)


class TestSignerStop:
    def test_the_lambda_stops_the_signer_at_its_first_poll_after_the_last_worker(self):
        assert signer_stop_time(last_worker_stop=505, wait_started=20, lambda_poll=15) == 515
        assert signer_stop_time(last_worker_stop=10, wait_started=20) == 20

    def test_past_the_lambdas_limit_nothing_stops_the_signer(self):
        assert (
            signer_stop_time(last_worker_stop=895, wait_started=20, lambda_poll=15, lambda_limit=900) is None
        )


class TestModel:
    def test_idle_is_each_workers_shutdown_minus_its_job_end(self):
        outcome = model([JobSpan(20, 25), JobSpan(20, 25), JobSpan(22, 27)])

        assert outcome.first_sleeps == [400.0, 600.0, 800.0]
        assert outcome.worker_stops == [420.0, 620.0, 822.0]
        assert outcome.idle == [395.0, 595.0, 795.0]
        assert outcome.last_worker_stop == pytest.approx(822.0)
        # The Lambda started waiting at 22 s (the last command) and polls every 15 s: 832 s.
        assert outcome.signer_stop == pytest.approx(832.0)
        assert outcome.signer_lag == pytest.approx(10.0)
        assert outcome.overhead == pytest.approx(832.0 - 5.0)
        assert outcome.notes == []

    def test_a_large_fleet_outlives_the_lambda_and_the_signer_stays_up(self):
        outcome = model([JobSpan(30, 35)] * 30)

        assert max(outcome.first_sleeps) == pytest.approx(890.0)
        assert outcome.signer_stop is None
        assert outcome.signer_lag is None and outcome.wall is None and outcome.overhead is None
        assert "past the Lambda's 900 s limit" in outcome.notes[0]

    def test_given_first_sleeps_must_match_the_workers(self):
        with pytest.raises(ValueError, match="2 first sleeps for 1 workers"):
            model([JobSpan(0, 1)], first_sleeps=[300, 400])

    def test_a_job_that_ends_before_it_starts_is_refused(self):
        with pytest.raises(ValueError, match="cannot end"):
            JobSpan(10, 5)
