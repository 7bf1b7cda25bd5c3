"""A failure while launching or supervising never leaves a run half-recorded (issue 10).

Before: an exception from the launcher (a lone surrogate in argv is a UnicodeEncodeError when
the argv is encoded for execve) killed the supervisor with the job recorded ``running`` (pid
null) and the next one ``pending``: no final state, no final tags, no shutdown. The next run
then took the job that never started for an interrupted one, and at most once never ran it
that day. Now a job whose launch failed is ``failed`` (it runs again next time), anything else
failing stops what runs and records it, and the run still ends: final state, tags, shutdown.
"""

from __future__ import annotations

from agent_fakes import FakeClock, FakeLauncher, FakeSignals, Harness, job

from instance_agent.agent import RunOptions, execute, prepare
from instance_agent.exit_codes import EXIT_JOBS_FAILED
from instance_agent.imds import ImdsClient
from instance_agent.planner import RUN, SKIP, plan_jobs
from instance_agent.spec import spec_from_document
from instance_agent.state import StateStore


def _encode_error() -> UnicodeEncodeError:
    try:
        "\ud800".encode("utf-8")
    except UnicodeEncodeError as error:
        return error
    raise AssertionError("a lone surrogate encoded")


def _next_plan(harness: Harness) -> dict:
    """What the next run for the date decides (every recorded process is gone by then)."""
    state = harness.store.load("2026-11-23")
    decisions = plan_jobs(harness.spec, state, force=False, alive=lambda record: False)
    return {decision.job: decision for decision in decisions}


class FakeEc2:
    def __init__(self) -> None:
        self.tags: list[dict] = []
        self.stopped: list[str] = []

    def create_tags(self, Resources, Tags):
        self.tags.append({tag["Key"]: tag["Value"] for tag in Tags})

    def delete_tags(self, Resources, Tags):
        pass

    def stop_instances(self, InstanceIds):
        self.stopped.extend(InstanceIds)


class TestLaunchFailure:
    def test_a_launcher_exception_fails_that_job_and_the_run_goes_on(self, tmp_path):
        harness = Harness(tmp_path, [job("a"), job("b")], a={"raises": _encode_error()}, b={"exits_at": 2})

        result = harness.run()

        assert result.state == "failed"
        state = harness.on_disk()
        record = state["jobs"]["a"]
        assert (record["status"], record["pid"], record["exit_code"]) == ("failed", None, None)
        assert "could not be started" in record["reason"]
        assert "UnicodeEncodeError" in record["reason"]
        assert record["ended_at"] is not None
        assert state["jobs"]["b"]["status"] == "succeeded"
        assert state["state"] == "failed"
        assert state["agent"]["ended_at"] is not None
        final = harness.reporter.reports[-1]
        assert (final.state, final.progress, final.jobs) == ("failed", "2/2", {"a": "failed", "b": 0})

    def test_the_next_run_starts_a_job_whose_launch_failed_again(self, tmp_path):
        harness = Harness(tmp_path, [job("a")], a={"raises": _encode_error()})
        harness.run()

        decision = _next_plan(harness)["a"]

        # It never ran: not `interrupted` (which at most once would never re-run that day).
        assert (decision.action, decision.lost) == (RUN, False)

    def test_after_a_launch_failure_the_final_tags_are_written_and_the_machine_stops(self, tmp_path, imds):
        clock = FakeClock()  # fleet_sim's IMDS serves no notice
        options = RunOptions(
            role="tasks",
            run_date="2026-11-23",
            state_dir=str(tmp_path / "state"),
            log_dir=str(tmp_path / "logs"),
            shutdown="ec2",
            imds_poll_seconds=1,
        )
        prepared = prepare(options, spec_from_document([job("a"), job("b")]), clock=clock)
        store = StateStore(options.state_dir)
        launcher = FakeLauncher(clock, store, a={"raises": RuntimeError("launcher bug")}, b={"exits_at": 1})
        ec2 = FakeEc2()
        try:
            code = execute(
                prepared,
                signals=FakeSignals(clock),
                clock=clock,
                launcher=launcher,
                imds=ImdsClient(imds.url, monotonic=clock.monotonic),
                client_factory=lambda region: lambda service: ec2,
                env={"PATH": "/usr/bin"},
            )
        finally:
            prepared.lock.release()

        assert code == EXIT_JOBS_FAILED
        assert (ec2.tags[-1]["fleet:state"], ec2.tags[-1]["fleet:progress"]) == ("failed", "2/2")
        assert ec2.stopped == [imds.instance_id]
        assert store.load("2026-11-23").jobs["a"].status == "failed"


class TestSupervisionFailure:
    def test_a_failure_inside_the_loop_stops_the_jobs_and_records_them(self, tmp_path):
        harness = Harness(
            tmp_path,
            [job("a"), job("b")],
            a={"exits_at": None, "poll_raises_at": 1.0},
            b={"exits_at": None},
        )

        result = harness.run()

        assert result.state == "failed"
        state = harness.on_disk()
        assert "RuntimeError: waitpid went wrong" in state["agent"]["error"]
        for name in ("a", "b"):
            record = state["jobs"][name]
            assert record["status"] == "interrupted"  # they did start, and were cut short
            assert "the agent failed" in record["reason"]
            assert harness.signals(name)[0][1] == "SIGTERM"
        assert state["state"] == "failed"
        assert harness.reporter.reports[-1].state == "failed"

    def test_a_job_that_never_started_is_skipped_never_interrupted(self, tmp_path):
        # take() #1 is the run's first look at signals, #2 is before a, #3 (before b) fails.
        harness = Harness(tmp_path, [job("a"), job("b")], signals_broken_after=2, a={"exits_at": None})

        result = harness.run()

        assert result.state == "failed"
        jobs = harness.on_disk()["jobs"]
        assert jobs["a"]["status"] == "interrupted"
        assert jobs["b"]["status"] == "skipped"
        assert "b" not in harness.launcher.processes
        plan = _next_plan(harness)
        assert plan["b"].action == RUN  # never started: runs next time
        assert plan["a"].action == SKIP  # started and cut short: at most once
