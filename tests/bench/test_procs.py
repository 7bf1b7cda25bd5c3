"""Process trees and peak memory from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.procs import TreeSampler, descendants, is_task_process


def test_descendants_follow_the_tree_from_the_roots():
    tree = {1: 0, 10: 1, 11: 10, 12: 11, 20: 1, 30: 99}

    assert descendants([10], tree) == {10, 11, 12}
    assert descendants([1], tree) == {1, 10, 11, 12, 20}
    assert descendants([404], tree) == set()


def test_airflow_task_processes_are_told_from_their_supervisors_by_title():
    assert is_task_process("airflow worker -- 01a2331f-61a6-74ed-a619-c67bbfc17da5")
    assert not is_task_process("airflow worker -- LocalExecutor: 01a2331f-61a6-74ed-a619-c67bbfc17da5")
    assert not is_task_process("airflow worker -- LocalExecutor: <idle>")
    assert not is_task_process("/usr/bin/python -m airflow triggerer")


def test_the_sampler_records_the_peak_of_a_child_that_grows():
    grow = "import time; b = bytearray(80 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"
    child = subprocess.Popen([sys.executable, "-c", grow])
    sampler = TreeSampler(roots=lambda: [os.getpid()], interval=0.1).start()
    try:
        time.sleep(1.0)
    finally:
        sampler.stop()
        child.wait(10)

    assert sampler.processes[child.pid].peak_kb > 80 * 1024
    assert sampler.processes[os.getpid()].peak_kb > 0
