"""One agent per state directory, handed over to the detached supervisor without a gap."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from instance_agent.lock import LockBusy, StateDirLock


class TestStateDirLock:
    def test_a_second_holder_is_refused_and_told_who_holds_it(self, tmp_path):
        first = StateDirLock(str(tmp_path))
        first.acquire()
        first.describe_holder("pid 42 role tasks date 2026-11-23\n")

        with pytest.raises(LockBusy) as caught:
            StateDirLock(str(tmp_path)).acquire()

        assert caught.value.holder == "pid 42 role tasks date 2026-11-23"
        first.release()
        StateDirLock(str(tmp_path)).acquire()  # free again

    def test_an_inherited_descriptor_keeps_the_lock_after_the_parent_lets_go(self, tmp_path):
        lock = StateDirLock(str(tmp_path))
        lock.acquire()
        assert lock.fd is not None
        child = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdin.read()"],
            stdin=subprocess.PIPE,
            pass_fds=(lock.fd,),
        )
        try:
            lock.release()  # the launcher exits...
            with pytest.raises(LockBusy):
                StateDirLock(str(tmp_path)).acquire()  # ...but the child still holds it
        finally:
            child.communicate(b"")
        StateDirLock(str(tmp_path)).acquire()  # the child died: the kernel released it

    def test_adopting_a_descriptor_that_is_no_lock_fails(self, tmp_path):
        path = tmp_path / "other"
        path.write_text("")
        holder = StateDirLock(str(tmp_path))
        holder.acquire()
        fd = os.open(holder.path, os.O_RDWR)
        try:
            with pytest.raises(OSError):
                StateDirLock.adopt(str(tmp_path), fd)  # a second open file: the flock is not ours
        finally:
            os.close(fd)
            holder.release()
