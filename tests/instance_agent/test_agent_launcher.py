"""Starting jobs: own session, output in the log, signals reach the whole tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from fleet_testing import wait_for

from instance_agent import procinfo
from instance_agent.launcher import EXIT_UNKNOWN, LaunchError, PopenLauncher, WatchedProcess
from instance_agent.spec import JobSpec


def _wait(handle, timeout: float = 10.0):
    return wait_for(lambda: handle.poll() is not None, timeout, what="the process to end") and handle.poll()


class TestPopenLauncher:
    def test_the_job_runs_in_its_own_session_with_its_output_in_the_log(self, tmp_path):
        log_path = tmp_path / "logs" / "job.log"
        script = "import os, sys; print(os.getsid(0) == os.getpid(), os.environ['RUN_DATE']); sys.exit(4)"
        job = JobSpec(name="job", argv=(sys.executable, "-c", script), cwd=str(tmp_path))

        handle = PopenLauncher().start(
            job, log_path=str(log_path), env={"RUN_DATE": "2026-11-23"}, header="# hi\n"
        )

        assert _wait(handle) == 4
        assert log_path.read_text() == "# hi\nTrue 2026-11-23\n"

    def test_a_signal_reaches_the_jobs_children_too(self, tmp_path):
        child_pid_file = tmp_path / "child.pid"
        script = (
            "import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(child_pid_file)!r}, 'w').write(str(child.pid))\n"
            "time.sleep(60)\n"
        )
        job = JobSpec(name="tree", argv=(sys.executable, "-c", script))
        handle = PopenLauncher().start(
            job, log_path=str(tmp_path / "tree.log"), env=dict(os.environ), header=""
        )
        wait_for(lambda: child_pid_file.exists() and child_pid_file.read_text(), what="the grandchild")
        grandchild = int(child_pid_file.read_text())

        handle.signal(signal.SIGTERM)

        assert _wait(handle) == -signal.SIGTERM
        wait_for(lambda: not procinfo.is_alive(grandchild, None), what="the grandchild to die")

    def test_a_missing_program_is_127(self, tmp_path):
        job = JobSpec(name="missing", argv=("/nonexistent/program",))

        with pytest.raises(LaunchError) as caught:
            PopenLauncher().start(job, log_path=str(tmp_path / "missing.log"), env={}, header="")

        assert caught.value.exit_code == 127
        assert "cannot start '/nonexistent/program'" in (tmp_path / "missing.log").read_text()

    def test_an_unwritable_log_is_a_launch_failure_not_a_crash(self, tmp_path):
        (tmp_path / "file").write_text("")
        job = JobSpec(name="job", argv=("/bin/true",))

        with pytest.raises(LaunchError) as caught:
            PopenLauncher().start(job, log_path=str(tmp_path / "file" / "job.log"), env={}, header="")

        assert caught.value.exit_code == 126


class TestWatchedProcess:
    def test_a_process_that_is_not_our_child_is_followed_by_identity(self):
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
        watched = WatchedProcess(process.pid, procinfo.identity(process.pid))

        assert watched.poll() is None
        process.wait()
        time.sleep(0.05)

        assert watched.poll() is EXIT_UNKNOWN

    def test_a_reused_pid_is_not_the_recorded_process(self):
        assert WatchedProcess(os.getpid(), "another-boot:123").poll() is EXIT_UNKNOWN
