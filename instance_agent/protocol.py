"""The agent ↔ DAG protocol: what the agent writes on its own instance's tags.

This module is the one place both sides read it from: the agent (on the VM, Python 3.9,
standard library only) writes these tags, and the DAG's sensors read them from the
DescribeInstances call they already make for the whole fleet, so watching a role's progress
costs no extra API call.

Tags (values are at most 256 characters, an EC2 limit):

- ``fleet:role``       the worker role the agent runs
- ``fleet:run-date``   the run date (YYYY-MM-DD) the tags describe
- ``fleet:state``      ``running`` | ``succeeded`` | ``failed`` | ``interrupted``
- ``fleet:heartbeat``  UTC ISO-8601 time, refreshed while the jobs run
- ``fleet:progress``   ``<terminal jobs>/<all jobs>``, e.g. ``3/4``
- ``fleet:jobs``       compact per-job summary (outcome and duration), see :func:`encode_jobs`
- ``fleet:notice``     an interruption or rebalance notice the agent saw during this run:
                       ``rebalance@<notice time>``, ``spot-<action>@<time>`` or
                       ``signal-SIGTERM@<time>``; absent when there was none
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

TAG_ROLE = "fleet:role"
TAG_RUN_DATE = "fleet:run-date"
TAG_STATE = "fleet:state"
TAG_HEARTBEAT = "fleet:heartbeat"
TAG_PROGRESS = "fleet:progress"
TAG_JOBS = "fleet:jobs"
TAG_NOTICE = "fleet:notice"

ALL_TAGS = (TAG_ROLE, TAG_RUN_DATE, TAG_STATE, TAG_HEARTBEAT, TAG_PROGRESS, TAG_JOBS, TAG_NOTICE)

STATE_RUNNING = "running"
STATE_SUCCEEDED = "succeeded"
STATE_FAILED = "failed"
STATE_INTERRUPTED = "interrupted"
AGENT_STATES = (STATE_RUNNING, STATE_SUCCEEDED, STATE_FAILED, STATE_INTERRUPTED)
TERMINAL_AGENT_STATES = (STATE_SUCCEEDED, STATE_FAILED, STATE_INTERRUPTED)

TAG_VALUE_MAX = 256

# Per-job outcome in fleet:jobs: an exit code (integer) or one of these words.
JOB_WORDS = ("pending", "running", "skipped", "interrupted", "timed_out")
# Matched whole, ASCII digits only (\d would take an Arabic-Indic one for 1): anyone may write tags.
_JOB_ENTRY = re.compile(r"(?P<name>[A-Za-z0-9_.-]+)=(?P<outcome>-?[0-9]+|[a-z_]+)(?:@(?P<seconds>[0-9]+))?")
_TRUNCATED = "+"


def encode_jobs(outcomes: Mapping[str, object], durations: Mapping[str, float] | None = None) -> str:
    """Encode ``{job: exit code or word}`` as ``name=0@95,name2=3@12,name3=running``.

    ``@N`` is the job's duration in whole seconds, when ``durations`` knows it.

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
    """The outcomes of :func:`encode_jobs`: ``{job: exit code (int) or word}``."""
    result: dict[str, object] = {}
    for match in _job_entries(text):
        outcome = match.group("outcome")
        result[match.group("name")] = int(outcome) if outcome.lstrip("-").isdigit() else outcome
    return result


def decode_job_durations(text: str) -> dict[str, int]:
    """The durations of :func:`encode_jobs`: ``{job: seconds}`` for the jobs that carry one."""
    return {m.group("name"): int(m.group("seconds")) for m in _job_entries(text) if m.group("seconds")}


def format_heartbeat(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_heartbeat(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


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
            heartbeat=parse_heartbeat(tags.get(TAG_HEARTBEAT)),
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
        """Seconds since the last heartbeat, or ``None`` when there is none."""
        if self.heartbeat is None:
            return None
        return max(0.0, (now - self.heartbeat).total_seconds())

    def is_complete_for(self, run_date: str) -> bool:
        """True when the agent finished every job of ``run_date`` successfully."""
        return self.run_date == run_date and self.state == STATE_SUCCEEDED
