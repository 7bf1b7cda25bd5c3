"""Once per date: the decision for every record a job can have."""

from __future__ import annotations

import pytest

from instance_agent.planner import RUN, SKIP, WATCH, plan_jobs
from instance_agent.spec import spec_from_document
from instance_agent.state import JobRecord, RunState


def _decide(record, *, force=False, rerun=False, alive=False):
    spec = spec_from_document([{"name": "trade", "argv": ["x"], "rerun_on_interrupt": rerun}])
    state = RunState(date="2026-11-23", role="tasks")
    if record is not None:
        state.jobs["trade"] = record
    (decision,) = plan_jobs(spec, state, force=force, alive=lambda record: alive)
    return decision


class TestPlanJobs:
    @pytest.mark.parametrize(
        ("record", "action"),
        [
            (None, RUN),
            (JobRecord(status="pending"), RUN),
            (JobRecord(status="skipped"), RUN),
            (JobRecord(status="succeeded", exit_code=0), SKIP),
            (JobRecord(status="failed", exit_code=3), RUN),
            (JobRecord(status="interrupted"), SKIP),
            (JobRecord(status="timed_out", exit_code=-9), SKIP),
        ],
    )
    def test_without_force(self, record, action):
        assert _decide(record).action == action

    @pytest.mark.parametrize("status", ["interrupted", "timed_out"])
    def test_a_job_stopped_half_way_reruns_only_when_it_says_it_is_safe(self, status):
        assert _decide(JobRecord(status=status), rerun=True).action == RUN
        skipped = _decide(JobRecord(status=status), rerun=False)
        assert skipped.action == SKIP
        assert "rerun_on_interrupt is false" in skipped.reason

    def test_running_with_no_live_process_becomes_interrupted(self):
        decision = _decide(JobRecord(status="running", pid=123), alive=False)

        assert (decision.action, decision.lost) == (SKIP, True)
        assert "no live process" in decision.reason

    def test_running_with_no_live_process_reruns_when_safe(self):
        decision = _decide(JobRecord(status="running", pid=123), alive=False, rerun=True)

        assert (decision.action, decision.lost) == (RUN, True)

    @pytest.mark.parametrize("force", [False, True])
    def test_a_live_job_is_watched_never_started_twice(self, force):
        decision = _decide(JobRecord(status="running", pid=123), alive=True, force=force, rerun=True)

        assert decision.action == WATCH
        assert "pid 123" in decision.reason

    @pytest.mark.parametrize("status", ["succeeded", "failed", "interrupted", "timed_out"])
    def test_force_reruns_everything_and_says_so(self, status):
        decision = _decide(JobRecord(status=status), force=True)

        assert decision.action == RUN
        assert decision.reason.startswith("FORCED")
