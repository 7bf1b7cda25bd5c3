"""Process trees and peak memory from /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from bench.procs import TreeSampler, is_task_process, process_tree

GRANDCHILD = (
    "import subprocess, sys, time; "
    "grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
    "print(grandchild.pid, flush=True); time.sleep(30)"
)


def test_the_tree_is_the_roots_and_every_process_below_them_with_its_parent():
    child = subprocess.Popen([sys.executable, "-c", GRANDCHILD], stdout=subprocess.PIPE, text=True)
    grandchild = int(child.stdout.readline())
    try:
        tree = process_tree([child.pid, 999_999_999])  # a root that is gone is left out
    finally:
        os.kill(grandchild, signal.SIGKILL)
        child.kill()
        child.wait(10)

    assert tree == {child.pid: os.getpid(), grandchild: child.pid}


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
