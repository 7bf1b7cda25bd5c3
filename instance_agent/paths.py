"""Where the agent keeps its files on the VM, for every module that needs one of them.

``<state-dir>/<date>.json`` (the state file) and the lock beside it; ``<log-dir>/<date>/``
holds each job's log and the agent's own, under the names they also have in S3.
"""

from __future__ import annotations

import os

from instance_agent.protocol import AGENT_LOG_NAME, job_log_name


def state_path(state_dir: str, run_date: str) -> str:
    return os.path.join(state_dir, f"{run_date}.json")


def run_log_dir(log_dir: str, run_date: str) -> str:
    return os.path.join(log_dir, run_date)


def job_log_path(log_dir: str, run_date: str, job: str) -> str:
    return os.path.join(run_log_dir(log_dir, run_date), job_log_name(job))


def agent_log_path(log_dir: str, run_date: str) -> str:
    return os.path.join(run_log_dir(log_dir, run_date), AGENT_LOG_NAME)
