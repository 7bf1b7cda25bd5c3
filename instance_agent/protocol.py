"""The whole agent ↔ DAG contract: every rule both sides must agree on, written once.

The agent (on the VM, standard library only) and the DAG (``plugins/``, ``dags/``) run on
different machines: no unit test of either side alone would catch two copies of a rule drifting
apart, so both import this module (``tests/instance_agent/test_contract.py`` checks the pair).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

# -- defaults both sides use ------------------------------------------------------------------------

DEFAULT_STATE_DIR = "/var/lib/fleet-agent"
DEFAULT_LOG_DIR = "/var/log/fleet-agent"
DEFAULT_HEARTBEAT_SECONDS = 60.0
# A heartbeat is a CreateTags call: more often than this would only get the agent throttled.
MIN_HEARTBEAT_SECONDS = 0.1
DEFAULT_KILL_GRACE_SECONDS = 30.0
DEFAULT_IMDS_POLL_SECONDS = 5.0

# -- names ------------------------------------------------------------------------------------------

# A job's name is also its log file's name and its S3 key: no path separator, no leading dot or
# "_" (so it never clashes with AGENT_LOG_NAME).
JOB_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# A role is in tags, S3 keys and every job's ROLE, and is also an Airflow task group id (no dots).
ROLE_NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")


# -- tags -------------------------------------------------------------------------------------------

# Each value is at most TAG_VALUE_MAX characters (EC2's limit).
TAG_ROLE = "fleet:role"  # the worker role the agent runs
TAG_RUN_DATE = "fleet:run-date"  # the run date (YYYY-MM-DD) the other tags describe
TAG_STATE = "fleet:state"  # STATE_*
TAG_HEARTBEAT = "fleet:heartbeat"  # the report's time (format_heartbeat), refreshed while jobs run
TAG_PROGRESS = "fleet:progress"  # <ended jobs>/<jobs of the spec>, e.g. 3/4
TAG_JOBS = "fleet:jobs"  # each job's outcome and duration: encode_jobs
# An interruption or rebalance notice seen during this run, absent when there was none:
# rebalance@<notice time>, spot-<action>@<time> or signal-SIGTERM@<time>.
TAG_NOTICE = "fleet:notice"


def spot_notice(action: Mapping) -> str:
    """The notice of IMDS's ``spot/instance-action`` document (``{"action", "time"}``)."""
    return f"spot-{action.get('action', 'unknown')}@{action.get('time', '')}"


def rebalance_notice(recommendation: Mapping) -> str:
    """The notice of IMDS's ``events/recommendations/rebalance`` document (``{"noticeTime"}``)."""
    return f"rebalance@{recommendation.get('noticeTime', '')}"


ALL_TAGS = (TAG_ROLE, TAG_RUN_DATE, TAG_STATE, TAG_HEARTBEAT, TAG_PROGRESS, TAG_JOBS, TAG_NOTICE)

STATE_RUNNING = "running"
STATE_SUCCEEDED = "succeeded"
STATE_FAILED = "failed"
STATE_INTERRUPTED = "interrupted"

TAG_VALUE_MAX = 256

# -- job outcomes in fleet:jobs ---------------------------------------------------------------------

# A job's status in the agent's state file. A job that ended by itself (succeeded or failed) is
# shown by its exit code; any other status is shown as its word.
JOB_PENDING = "pending"
JOB_RUNNING = "running"
JOB_SUCCEEDED = "succeeded"
JOB_FAILED = "failed"
JOB_TIMED_OUT = "timed_out"
JOB_INTERRUPTED = "interrupted"
JOB_SKIPPED = "skipped"  # not run: it succeeded earlier for the date, or the run ended first
JOB_WORDS = (JOB_PENDING, JOB_RUNNING, JOB_SKIPPED, JOB_INTERRUPTED, JOB_TIMED_OUT)
JOB_STATUSES = (*JOB_WORDS, JOB_SUCCEEDED, JOB_FAILED)


def job_outcome(status: str, exit_code: int | None) -> int | str:
    """What ``fleet:jobs`` says of a job: its exit code if it ended by itself, else its status."""
    if status in (JOB_SUCCEEDED, JOB_FAILED) and exit_code is not None:
        return exit_code
    return status


def outcome_ok(outcome: object) -> bool:
    """True for an outcome the role's report accepts: exit code 0, or ``skipped``."""
    return outcome == 0 or outcome == JOB_SKIPPED


# Matched whole, ASCII digits only (\d would take an Arabic-Indic one for 1): anyone may write tags.
_JOB_ENTRY = re.compile(r"(?P<name>[A-Za-z0-9_.-]+)=(?P<outcome>-?[0-9]+|[a-z_]+)(?:@(?P<seconds>[0-9]+))?")
_TRUNCATED = "+"


def encode_jobs(outcomes: Mapping[str, object], durations: Mapping[str, float] | None = None) -> str:
    """``{job: exit code or word}`` as ``name=0@95,name2=3@12,name3=running`` (``@``: seconds).

    Past 256 characters the tail is replaced by ``,+N`` (N jobs not shown): the full record
    is in the agent's state file and logs, the tag is only a summary.
    """
    durations = durations or {}
    entries = [
        f"{name}={outcome}" + (f"@{int(durations[name])}" if durations.get(name) is not None else "")
        for name, outcome in outcomes.items()
    ]
    text = ",".join(entries)
    if len(text) <= TAG_VALUE_MAX:
        return text
    shown: list = []
    for entry in entries:
        hidden_after = len(entries) - len(shown) - 1
        if len(",".join([*shown, entry, f"{_TRUNCATED}{hidden_after}"])) > TAG_VALUE_MAX:
            break
        shown.append(entry)
    return ",".join([*shown, f"{_TRUNCATED}{len(entries) - len(shown)}"])


def _job_entries(text: str):
    for entry in filter(None, (part.strip() for part in (text or "").split(","))):
        match = _JOB_ENTRY.fullmatch(entry)
        if match:  # malformed entries (and the "+N" marker) are ignored
            yield match


def decode_jobs(text: str) -> dict[str, object]:
    """``{job: exit code (int) or word}``, from :func:`encode_jobs`."""
    result: dict[str, object] = {}
    for match in _job_entries(text):
        outcome = match.group("outcome")
        result[match.group("name")] = int(outcome) if outcome.lstrip("-").isdigit() else outcome
    return result


def decode_job_durations(text: str) -> dict[str, int]:
    """``{job: seconds}`` for the jobs that carry one, from :func:`encode_jobs`."""
    return {m.group("name"): int(m.group("seconds")) for m in _job_entries(text) if m.group("seconds")}


def format_heartbeat(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str | None) -> datetime | None:
    """An ISO-8601 time (``Z`` or an offset; none means UTC), or ``None`` for text that is no time."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# -- S3 logs ----------------------------------------------------------------------------------------


AGENT_LOG_NAME = "_agent.log"  # job names cannot start with "_", so this never clashes
STATE_FILE_NAME = "state.json"  # the final state file, next to the logs


def job_log_name(job: str) -> str:
    """The job's log file, on the VM (:func:`job_log_path`) and in S3 (:func:`s3_job_log`)."""
    return f"{job}.log"


def run_log_dir(log_dir: str, run_date: str) -> str:
    """Where the run's logs are on the VM, under their S3 names."""
    return os.path.join(log_dir, run_date)


def job_log_path(log_dir: str, run_date: str, job: str) -> str:
    return os.path.join(run_log_dir(log_dir, run_date), job_log_name(job))


def agent_log_path(log_dir: str, run_date: str) -> str:
    return os.path.join(run_log_dir(log_dir, run_date), AGENT_LOG_NAME)


def split_s3_prefix(s3_log_prefix: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` → ``("bucket", "a/b")`` (a prefix the agent's rule accepted)."""
    bucket, _, key = s3_log_prefix.removeprefix("s3://").partition("/")
    return bucket, key.strip("/")


def s3_run_prefix(key_prefix: str, run_date: str, role: str) -> str:
    """Where a run's files go in the bucket: ``<key prefix>/<run date>/<role>``."""
    return "/".join(part for part in (key_prefix, run_date, role) if part)


def s3_key(run_prefix: str, name: str) -> str:
    """The key of one file (:func:`job_log_name`, :data:`AGENT_LOG_NAME`, ...) of a run."""
    return "/".join(part for part in (run_prefix, name) if part)


def s3_job_log(s3_log_prefix: str, run_date: str, role: str, job: str) -> tuple[str, str]:
    """``(bucket, key)`` of a job's log, from the config's ``s3_log_prefix``."""
    bucket, key_prefix = split_s3_prefix(s3_log_prefix)
    return bucket, s3_key(s3_run_prefix(key_prefix, run_date, role), job_log_name(job))


# -- the report -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentReport:
    """What the agent last reported on an instance's tags."""

    role: str | None = None
    run_date: str | None = None
    state: str | None = None
    heartbeat: datetime | None = None
    progress: str | None = None
    jobs: dict[str, object] = field(default_factory=dict)
    durations: dict[str, int] = field(default_factory=dict)
    notice: str | None = None

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> AgentReport | None:
        """Read a report from ``{key: value}`` tags; ``None`` when the agent never wrote one."""
        if not any(key in tags for key in ALL_TAGS):
            return None
        return cls(
            role=tags.get(TAG_ROLE),
            run_date=tags.get(TAG_RUN_DATE),
            state=tags.get(TAG_STATE),
            heartbeat=parse_utc(tags.get(TAG_HEARTBEAT)),
            progress=tags.get(TAG_PROGRESS),
            jobs=decode_jobs(tags.get(TAG_JOBS, "")),
            durations=decode_job_durations(tags.get(TAG_JOBS, "")),
            notice=tags.get(TAG_NOTICE),
        )

    def to_tags(self) -> dict[str, str]:
        tags = {
            TAG_ROLE: self.role,
            TAG_RUN_DATE: self.run_date,
            TAG_STATE: self.state,
            TAG_HEARTBEAT: format_heartbeat(self.heartbeat) if self.heartbeat else None,
            TAG_PROGRESS: self.progress,
            TAG_JOBS: encode_jobs(self.jobs, self.durations) if self.jobs else None,
            TAG_NOTICE: self.notice[:TAG_VALUE_MAX] if self.notice else None,
        }
        return {key: value for key, value in tags.items() if value is not None}

    def heartbeat_age(self, now: datetime) -> float | None:
        if self.heartbeat is None:
            return None
        return max(0.0, (now - self.heartbeat).total_seconds())

    def is_for(self, run_date: str) -> bool:
        """A report of another day says nothing of ``run_date``."""
        return self.run_date == run_date

    def is_running_for(self, run_date: str) -> bool:
        return self.is_for(run_date) and self.state == STATE_RUNNING

    def is_complete_for(self, run_date: str) -> bool:
        return self.is_for(run_date) and self.state == STATE_SUCCEEDED


def report_for(report: AgentReport | None, run_date: str | None) -> AgentReport | None:
    """``report`` when it describes ``run_date`` (any date when ``run_date`` is empty), else ``None``."""
    if report is None or (run_date and not report.is_for(run_date)):
        return None
    return report
