"""The per-date state file ``<state-dir>/<date>.json``: the local truth about which job ran,
when, and how it ended. Written atomically, so a crash leaves the old or the new version; a
file that cannot be read or does not parse is never overwritten: the agent refuses to run.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from instance_agent.protocol import JOB_PENDING, JOB_STATUSES, STATE_RUNNING

FORMAT_VERSION = 1

# What an attempt leaves in a job's history when the job is started again.
_ATTEMPT_KEYS = ("status", "exit_code", "started_at", "ended_at", "reason")
# A job record's fields that may be null, and their type otherwise (never a bool).
_OPTIONAL_TYPES = dict(exit_code=int, started_at=str, ended_at=str, pid=int, process=str, reason=str, log=str)


class StateError(Exception):
    """The state file is unreadable or corrupt; it was left as it is."""


@dataclass
class JobRecord:
    """One job for one date. ``attempts`` counts the times the agent started it."""

    status: str = JOB_PENDING
    exit_code: int | None = None
    started_at: str | None = None
    ended_at: str | None = None
    pid: int | None = None
    process: str | None = None  # see procinfo.identity: tells a live job from a reused pid
    attempts: int = 0
    reason: str | None = None
    log: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def archive(self) -> None:
        """Push this attempt into ``history`` before the job is started again."""
        if self.attempts or self.status != JOB_PENDING:
            self.history.append({key: getattr(self, key) for key in _ATTEMPT_KEYS})
        self.status, self.exit_code, self.started_at, self.ended_at = JOB_PENDING, None, None, None
        self.pid, self.process, self.reason = None, None, None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> JobRecord:
        if not isinstance(data, dict):
            raise StateError(f"{where}: expected an object, got {type(data).__name__}")
        status = data.get("status")
        if status not in JOB_STATUSES:
            raise StateError(f"{where}.status: unknown status {status!r}")
        record = cls(status=status)
        for key, kind in _OPTIONAL_TYPES.items():
            value = data.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
                raise StateError(f"{where}.{key}: unexpected value {value!r}")
            setattr(record, key, value)
        attempts = data.get("attempts", 0)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
            raise StateError(f"{where}.attempts: unexpected value {attempts!r}")
        record.attempts = attempts
        history = data.get("history", [])
        if not isinstance(history, list) or not all(isinstance(item, dict) for item in history):
            raise StateError(f"{where}.history: expected a list of objects")
        record.history = history
        return record


@dataclass
class AgentRecord:
    """The agent's last run of the date. Fields past ``_ALWAYS`` are written only once known."""

    pid: int | None = None
    started_at: str | None = None
    ended_at: str | None = None
    force: bool = False
    shutdown: str | None = None
    interrupted_by: str | None = None
    warnings: list[str] = field(default_factory=list)
    process: str | None = None  # the detached supervisor's procinfo.identity
    instance_id: str | None = None
    rebalance_recommendation: str | None = None  # the notice's time
    error: str | None = None  # what made the agent give up supervising

    _ALWAYS = ("pid", "started_at", "ended_at", "force", "shutdown", "interrupted_by", "warnings")

    def to_dict(self) -> dict[str, Any]:
        return {
            item.name: getattr(self, item.name)
            for item in fields(self)
            if item.name in self._ALWAYS or getattr(self, item.name) is not None
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentRecord:
        # Unchecked: nothing decides on it but procinfo.is_alive, which takes any value.
        return cls(**{item.name: data[item.name] for item in fields(cls) if item.name in data})


@dataclass
class RunState:
    """Everything recorded for one date: the agent's last run and every job's record."""

    date: str
    role: str
    state: str = STATE_RUNNING  # the agent's overall state: protocol.STATE_*
    agent: AgentRecord = field(default_factory=AgentRecord)
    plan: dict[str, Any] = field(default_factory=dict)
    jobs: dict[str, JobRecord] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "date": self.date,
            "role": self.role,
            "state": self.state,
            "agent": self.agent.to_dict(),
            "plan": self.plan,
            "jobs": {name: record.to_dict() for name, record in self.jobs.items()},
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> RunState:
        if not isinstance(data, dict):
            raise StateError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT_VERSION:
            raise StateError(f"{where}: unknown format {data.get('format')!r} (expected {FORMAT_VERSION})")
        for key in ("date", "role", "state"):
            if not isinstance(data.get(key), str):
                raise StateError(f"{where}: {key} missing or not a string")
        for key in ("agent", "plan", "jobs"):
            if not isinstance(data.get(key, {}), dict):
                raise StateError(f"{where}: {key} is not an object")
        jobs = {
            name: JobRecord.from_dict(record, f"{where}: jobs.{name}")
            for name, record in data.get("jobs", {}).items()
        }
        return cls(
            date=data["date"],
            role=data["role"],
            state=data["state"],
            agent=AgentRecord.from_dict(data.get("agent", {})),
            plan=dict(data.get("plan", {})),
            jobs=jobs,
        )


class StateStore:
    def __init__(self, state_dir: str):
        self.state_dir = state_dir

    def path(self, run_date: str) -> str:
        return os.path.join(self.state_dir, f"{run_date}.json")

    def load(self, run_date: str) -> RunState | None:
        """The date's state, ``None`` when there is none yet, :class:`StateError` when unusable."""
        path = self.path(run_date)
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            raise StateError(f"{path}: cannot read the state file: {error}") from None
        try:
            data = json.loads(text)
        except ValueError as error:
            raise StateError(f"{path}: corrupt state file (not JSON: {error})") from None
        state = RunState.from_dict(data, path)
        if state.date != run_date:
            raise StateError(f"{path}: holds date {state.date!r}, not {run_date!r}")
        return state

    def save(self, state: RunState) -> None:
        write_atomically(self.path(state.date), json.dumps(state.to_dict(), indent=2) + "\n")

    def latest_date(self) -> str | None:
        """The most recent date with a state file (dates sort as text)."""
        try:
            names = os.listdir(self.state_dir)
        except OSError:
            return None
        dates = sorted(
            name[: -len(".json")]
            for name in names
            if name.endswith(".json") and len(name) == len("YYYY-MM-DD.json") and name[0].isdigit()
        )
        return dates[-1] if dates else None


def write_atomically(path: str, text: str) -> None:
    """Temp file in the same directory, fsync, rename over ``path``, fsync the directory."""
    directory = os.path.dirname(path) or "."
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
