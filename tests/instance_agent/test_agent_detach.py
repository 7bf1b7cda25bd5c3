"""Handing the run to the detached supervisor: a supervisor that never says ready is a failure
the caller sees, and frees the lock."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from instance_agent.detach import DetachError, spawn_supervisor
from instance_agent.lock import LockBusy, StateDirLock


def _fake_python(tmp_path, body: str) -> str:
    """An executable standing in for the interpreter: gets the supervisor's arguments."""
    path = tmp_path / "python"
    path.write_text(f"#!{sys.executable}\nimport os, sys, time\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@pytest.fixture
def locked(tmp_path):
    (tmp_path / "logs" / "2026-11-23").mkdir(parents=True)
    lock = StateDirLock(str(tmp_path))
    lock.acquire()
    yield lock
    lock.release()


class TestSpawnSupervisor:
    def test_a_supervisor_that_dies_before_ready_is_reported(self, tmp_path, locked):
        python = _fake_python(
            tmp_path, "print('no module named instance_agent', file=sys.stderr)\nsys.exit(1)"
        )

        with pytest.raises(DetachError, match="exited 1 before it was ready"):
            spawn_supervisor(
                {}, lock_fd=locked.fd, log_dir=str(tmp_path / "logs"), run_date="2026-11-23", python=python
            )

        log = (tmp_path / "logs" / "2026-11-23" / "_agent.log").read_text()
        assert "no module named instance_agent" in log  # its stderr went to the agent log

    def test_a_supervisor_that_hangs_is_killed_and_the_lock_is_free_again(self, tmp_path, locked):
        python = _fake_python(tmp_path, "time.sleep(30)")

        with pytest.raises(DetachError, match=r"did not get ready within 0\.5 s"):
            spawn_supervisor(
                {},
                lock_fd=locked.fd,
                log_dir=str(tmp_path / "logs"),
                run_date="2026-11-23",
                python=python,
                ready_timeout=0.5,
            )

        locked.release()
        StateDirLock(str(tmp_path)).acquire()  # nobody holds an inherited copy any more

    def test_a_ready_supervisor_keeps_the_lock_after_the_launcher_lets_go(self, tmp_path, locked):
        # Says ready on the descriptor it was given, then lives on for a while.
        python = _fake_python(
            tmp_path, "os.write(int(sys.argv[sys.argv.index('--ready-fd') + 1]), b'ready\\n')\ntime.sleep(2)"
        )

        pid = spawn_supervisor(
            {}, lock_fd=locked.fd, log_dir=str(tmp_path / "logs"), run_date="2026-11-23", python=python
        )

        try:
            locked.release()
            with pytest.raises(LockBusy):
                StateDirLock(str(tmp_path)).acquire()
        finally:
            os.kill(pid, 9)
