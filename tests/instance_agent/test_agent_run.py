"""The agent end to end, as a real subprocess running tiny job scripts: once per date, crashes,
timeouts, failures, a corrupt state file, concurrent runs, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from agent_testing import RUN_DATE, kill_group
from fleet_testing import wait_for


def _summary(completed: subprocess.CompletedProcess) -> dict:
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1, (
        f"expected one line of JSON, got {completed.stdout!r} (stderr {completed.stderr!r})"
    )
    return json.loads(lines[0])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class TestOncePerDate:
    def test_a_second_run_for_the_same_date_runs_nothing_again(self, agent):
        spec = agent.spec([agent.counting_job("backoffice"), agent.counting_job("shield")])

        first = agent.run(spec)
        second = agent.run(spec)

        assert first.returncode == 0, first.stderr
        assert second.returncode == 0, second.stderr
        assert agent.count("backoffice") == 1
        assert agent.count("shield") == 1
        assert sorted(_summary(first)["run"]) == ["backoffice", "shield"]
        plan = _summary(second)
        assert plan["status"] == "nothing_to_do"
        assert plan["run"] == {}
        assert "succeeded earlier" in plan["skip"]["backoffice"]
        state = agent.state()
        assert state["state"] == "succeeded"
        assert state["jobs"]["backoffice"]["attempts"] == 1

    def test_detached_runs_return_at_once_and_still_run_each_job_once(self, agent):
        spec = agent.spec([agent.counting_job("backoffice", sleep=2)])

        began = time.monotonic()
        first = agent.run(spec, foreground=False)
        returned_after = time.monotonic() - began

        assert first.returncode == 0, first.stderr
        assert returned_after < 2, "the SSM command must not wait for the jobs"
        plan = _summary(first)
        assert plan["status"] == "started"
        assert plan["run"] == {"backoffice": "first run for this date"}
        assert plan["pid"] != os.getpid()
        agent.wait_finished()
        again = agent.run(spec, foreground=False)
        assert _summary(again)["status"] == "nothing_to_do"
        agent.wait_finished()
        assert agent.count("backoffice") == 1
        assert agent.state()["jobs"]["backoffice"]["status"] == "succeeded"

    def test_another_date_runs_again(self, agent):
        spec = agent.spec([agent.counting_job("backoffice")])

        assert agent.run(spec, date="2026-11-23").returncode == 0
        assert agent.run(spec, date="2026-11-24").returncode == 0

        assert agent.count("backoffice") == 2
        lines = (agent.work / "backoffice.count").read_text().splitlines()
        assert [line.split()[:2] for line in lines] == [["2026-11-23", "tasks"], ["2026-11-24", "tasks"]]

    def test_force_runs_everything_again_and_says_so(self, agent):
        spec = agent.spec([agent.counting_job("backoffice")])
        assert agent.run(spec).returncode == 0

        forced = agent.run(spec, "--force")

        assert forced.returncode == 0, forced.stderr
        assert agent.count("backoffice") == 2
        plan = _summary(forced)
        assert plan["force"] is True
        assert plan["run"]["backoffice"].startswith("FORCED")
        assert "--force" in plan["warnings"][0]
        assert "WARNING: --force" in forced.stderr
        record = agent.job("backoffice")
        assert record["attempts"] == 2
        assert record["history"][0]["status"] == "succeeded"

    def test_a_failed_job_runs_again_on_the_next_run(self, agent):
        spec = agent.spec([agent.counting_job("flaky", exit_code=3)])
        assert agent.run(spec).returncode == 1

        retry = agent.run(spec)

        assert "failed earlier (exit 3)" in _summary(retry)["run"]["flaky"]
        assert agent.count("flaky") == 2


class TestCrashes:
    @pytest.mark.parametrize("rerun_on_interrupt", [False, True])
    def test_a_job_running_when_the_machine_died_is_interrupted(self, agent, rerun_on_interrupt):
        spec = agent.spec([agent.counting_job("trade", sleep=30, rerun_on_interrupt=rerun_on_interrupt)])
        process = agent.start(spec)
        try:
            record = agent.wait_job_status("trade", "running")
            wait_for(lambda: agent.count("trade") == 1, what="the job to start")
        finally:
            process.kill()  # SIGKILL: no chance to record anything
            process.wait()
        kill_group(record["pid"])  # ... and the job died with the machine
        wait_for(lambda: not _alive(record["pid"]), what="the job to die")
        assert agent.job("trade")["status"] == "running"  # what the crash left behind

        quick = agent.spec([agent.counting_job("trade", rerun_on_interrupt=rerun_on_interrupt)])
        rerun = agent.run(quick)

        plan = _summary(rerun)
        record = agent.job("trade")
        if rerun_on_interrupt:
            assert rerun.returncode == 0, rerun.stderr
            assert "rerun_on_interrupt is true" in plan["run"]["trade"]
            assert agent.count("trade") == 2
            assert record["status"] == "succeeded"
            assert record["history"][0]["status"] == "interrupted"
            assert "no live process" in record["history"][0]["reason"]
        else:
            assert rerun.returncode == 1, rerun.stderr
            assert "rerun_on_interrupt is false" in plan["skip"]["trade"]
            assert agent.count("trade") == 1
            assert record["status"] == "interrupted"
            assert "no live process" in record["reason"]
            assert agent.state()["state"] == "failed"

    def test_a_job_that_outlived_its_agent_is_watched_not_started_twice(self, agent):
        spec = agent.spec([agent.counting_job("trade", sleep=1.5, rerun_on_interrupt=True)])
        process = agent.start(spec)
        try:
            record = agent.wait_job_status("trade", "running")
        finally:
            process.kill()
            process.wait()
        try:
            assert _alive(record["pid"])
            rerun = agent.run(spec, "--force")  # not even --force starts a second copy

            assert "never started twice" in _summary(rerun)["watch"]["trade"]
            assert agent.count("trade") == 1
            assert not _alive(record["pid"])  # the run waited for it before finishing
            final = agent.job("trade")
            assert final["status"] == "interrupted"
            assert "exit code unknown" in final["reason"]
        finally:
            kill_group(record["pid"])


class TestOutcomes:
    def test_exit_codes_are_recorded_and_a_failure_fails_the_run(self, agent):
        spec = agent.spec([agent.counting_job("ok"), agent.counting_job("broken", exit_code=3)])

        completed = agent.run(spec)

        assert completed.returncode == 1
        state = agent.state()
        assert state["state"] == "failed"
        assert state["jobs"]["broken"]["status"] == "failed"
        assert state["jobs"]["broken"]["exit_code"] == 3
        assert state["jobs"]["ok"]["exit_code"] == 0
        assert state["jobs"]["ok"]["started_at"] <= state["jobs"]["ok"]["ended_at"]

    def test_timeouts_send_sigterm_then_sigkill_after_the_grace(self, agent):
        stubborn = agent.script(
            "stubborn.py",
            "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(30)\n",
        )
        polite = agent.script("polite.py", "import time\ntime.sleep(30)\n")
        spec = agent.spec(
            [
                {"name": "stubborn", "argv": [sys.executable, stubborn], "timeout": 0.5},
                {"name": "polite", "argv": [sys.executable, polite], "timeout": 0.5},
                agent.counting_job("fast", timeout=10),
            ],
            kill_grace_seconds=1,
        )

        began = time.monotonic()
        completed = agent.run(spec)

        assert time.monotonic() - began < 10
        assert completed.returncode == 1
        jobs = agent.state()["jobs"]
        assert jobs["polite"]["status"] == "timed_out"
        assert jobs["polite"]["exit_code"] == -signal.SIGTERM
        assert jobs["stubborn"]["status"] == "timed_out"
        assert jobs["stubborn"]["exit_code"] == -signal.SIGKILL
        assert "timed out after 0.5 s" in jobs["stubborn"]["reason"]
        assert jobs["fast"]["status"] == "succeeded"

    def test_a_program_that_cannot_start_fails_like_a_shell_would_say(self, agent):
        spec = agent.spec([{"name": "missing", "argv": ["/nonexistent/program"]}, agent.counting_job("ok")])

        completed = agent.run(spec)

        assert completed.returncode == 1
        record = agent.job("missing")
        assert (record["status"], record["exit_code"]) == ("failed", 127)
        assert "/nonexistent/program" in record["reason"]
        assert agent.count("ok") == 1

    def test_jobs_get_run_date_role_env_cwd_and_a_log_file(self, agent):
        script = agent.script(
            "env.py",
            "import json, os\n"
            "seen = {k: os.environ.get(k) for k in ('RUN_DATE', 'ROLE', 'MODE')}\n"
            "print(json.dumps(dict(seen, cwd=os.getcwd())))\n",
        )
        spec = agent.spec(
            [
                {
                    "name": "env",
                    "argv": [sys.executable, script],
                    "env": {"MODE": "live"},
                    "cwd": str(agent.root),
                }
            ]
        )

        assert agent.run(spec).returncode == 0

        log_file = agent.log_dir / RUN_DATE / "env.log"
        output = json.loads(log_file.read_text().splitlines()[-1])
        assert output == {"RUN_DATE": RUN_DATE, "ROLE": "tasks", "MODE": "live", "cwd": str(agent.root)}
        assert agent.job("env")["log"] == str(log_file)

    def test_a_shell_job_runs_through_the_shell_when_it_says_so(self, agent):
        spec = agent.spec(
            [{"name": "sh", "argv": ['echo "$RUN_DATE" > out.txt'], "shell": True, "cwd": str(agent.work)}]
        )

        assert agent.run(spec).returncode == 0

        assert (agent.work / "out.txt").read_text().strip() == RUN_DATE

    def test_a_full_disk_is_a_warning_in_the_summary(self, agent):
        spec = agent.spec([agent.counting_job("ok")], disk_warn_percent=0)

        completed = agent.run(spec)

        warnings = _summary(completed)["warnings"]
        assert any("% full" in warning for warning in warnings)
        assert agent.state()["agent"]["warnings"] == warnings
        assert agent.count("ok") == 1


class TestRefusals:
    def test_a_corrupt_state_file_is_refused_and_left_untouched(self, agent):
        agent.state_dir.mkdir(parents=True)
        agent.state_path().write_bytes(b'{"format": 1, "date": "2026-11-23", "jobs": {')
        spec = agent.spec([agent.counting_job("trade")])

        completed = agent.run(spec)

        assert completed.returncode == 3
        assert "corrupt" in completed.stderr
        assert str(agent.state_path()) in completed.stderr
        assert completed.stdout == ""
        assert agent.state_path().read_bytes() == b'{"format": 1, "date": "2026-11-23", "jobs": {'
        assert agent.count("trade") == 0

    def test_a_state_file_with_an_unknown_status_is_refused(self, agent):
        agent.state_dir.mkdir(parents=True)
        text = json.dumps(
            {
                "format": 1,
                "date": RUN_DATE,
                "role": "tasks",
                "state": "running",
                "jobs": {"trade": {"status": "maybe"}},
            }
        )
        agent.state_path().write_text(text)

        completed = agent.run(agent.spec([agent.counting_job("trade")]))

        assert completed.returncode == 3
        assert "unknown status 'maybe'" in completed.stderr
        assert agent.state_path().read_text() == text
        assert agent.count("trade") == 0

    def test_an_unreadable_state_file_is_refused(self, agent):
        agent.state_path().mkdir(parents=True)  # a directory where the file should be

        completed = agent.run(agent.spec([agent.counting_job("trade")]))

        assert completed.returncode == 3
        assert "cannot read" in completed.stderr
        assert agent.count("trade") == 0

    def test_a_second_run_while_one_is_alive_says_already_running(self, agent):
        spec = agent.spec([agent.counting_job("trade", sleep=1.5)])
        first = agent.run(spec, foreground=False)

        second = agent.run(spec, foreground=False)

        assert first.returncode == 0
        assert second.returncode == 0
        answer = _summary(second)
        assert answer["status"] == "already_running"
        assert f"pid {_summary(first)['pid']}" in answer["holder"]
        agent.wait_finished()
        assert agent.count("trade") == 1

    def test_two_runs_started_together_run_the_jobs_once(self, agent):
        spec = agent.spec([agent.counting_job("trade", sleep=0.5)])

        processes = [agent.start(spec, foreground=False) for _ in range(2)]
        answers = sorted(json.loads(process.communicate(timeout=30)[0])["status"] for process in processes)

        assert answers == ["already_running", "started"]
        assert all(process.returncode == 0 for process in processes)
        agent.wait_finished()
        assert agent.count("trade") == 1


class TestSignals:
    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    def test_sigterm_or_sigint_to_the_agent_interrupts_the_jobs(self, agent, signum):
        marker = agent.work / "got-term"
        script = agent.script(
            "graceful.py",
            "import signal, sys, time\n"
            "def bye(*_):\n"
            f"    open({str(marker)!r}, 'w').write('TERM')\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\n"
            "print('ready', flush=True)\n"
            "time.sleep(30)\n",
        )
        spec = agent.spec([{"name": "trade", "argv": [sys.executable, script]}], kill_grace_seconds=5)
        process = agent.start(spec)
        try:
            agent.wait_job_status("trade", "running")
            log_file = agent.log_dir / RUN_DATE / "trade.log"
            wait_for(lambda: "ready" in log_file.read_text(), what="the job's handler")
            process.send_signal(signum)
            process.communicate(timeout=20)
        finally:
            process.kill()

        assert process.returncode == 5
        assert marker.read_text() == "TERM"
        state = agent.state()
        assert state["state"] == "interrupted"
        assert state["jobs"]["trade"]["status"] == "interrupted"
        assert signal.Signals(signum).name in state["agent"]["interrupted_by"]
