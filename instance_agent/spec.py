"""What the DAG sends, validated before anything starts or is written.

The spec is JSON: either a list of jobs, or an object holding ``jobs`` and a few optional
settings for the whole run. Every key is known; an unknown one is an error, so a typo
(``rerun_on_interupt``) never silently falls back to a default. Errors name the field path and
the bad value: ``jobs[1].name: duplicate job name 'x'``.

A job::

    {"name": "backoffice",                     # [A-Za-z0-9][A-Za-z0-9_.-]*, at most 64
     "argv": ["/root/venv/bin/python", "run.py"],   # run as is, never through a shell
     "shell": false,                            # true: argv is ONE string run by /bin/sh -c
     "cwd": "/root/backoffice",                 # absolute; default "/"
     "env": {"MODE": "live"},                   # added to the agent's environment
     "timeout": 10800,                          # seconds; null or absent: no limit
     "rerun_on_interrupt": false}               # re-run after a crash/reboot/spot reclaim?

The run's settings (all optional): ``s3_log_prefix`` (``s3://bucket/prefix``),
``heartbeat_seconds`` (60), ``kill_grace_seconds`` (30), ``disk_warn_percent`` (80) and
``max_runtime`` (seconds for the whole run; past it every job still running is stopped and
recorded ``timed_out``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_S3_PREFIX = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<key>.*))?$")

# The agent sets these for every job; a spec may not override them.
RESERVED_ENV = ("RUN_DATE", "ROLE")

DEFAULT_HEARTBEAT_SECONDS = 60.0
DEFAULT_KILL_GRACE_SECONDS = 30.0
DEFAULT_DISK_WARN_PERCENT = 80.0

JOB_KEYS = ("name", "argv", "shell", "cwd", "env", "timeout", "rerun_on_interrupt")
RUN_KEYS = (
    "jobs",
    "s3_log_prefix",
    "heartbeat_seconds",
    "kill_grace_seconds",
    "disk_warn_percent",
    "max_runtime",
)


class SpecError(ValueError):
    """Bad input: the message names the field and the bad value."""


@dataclass(frozen=True)
class JobSpec:
    name: str
    argv: tuple[str, ...]
    shell: bool = False
    cwd: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    rerun_on_interrupt: bool = False

    def command(self) -> list[str]:
        """The argv handed to the kernel: the spec's own, or ``/bin/sh -c`` for a shell job."""
        return ["/bin/sh", "-c", self.argv[0]] if self.shell else list(self.argv)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "argv": list(self.argv),
            "shell": self.shell,
            "cwd": self.cwd,
            "env": dict(self.env),
            "timeout": self.timeout,
            "rerun_on_interrupt": self.rerun_on_interrupt,
        }


@dataclass(frozen=True)
class RunSpec:
    jobs: tuple[JobSpec, ...]
    s3_log_prefix: str | None = None
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    kill_grace_seconds: float = DEFAULT_KILL_GRACE_SECONDS
    disk_warn_percent: float = DEFAULT_DISK_WARN_PERCENT
    max_runtime: float | None = None

    def job(self, name: str) -> JobSpec:
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)

    @property
    def job_names(self) -> list[str]:
        return [job.name for job in self.jobs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobs": [job.to_dict() for job in self.jobs],
            "s3_log_prefix": self.s3_log_prefix,
            "heartbeat_seconds": self.heartbeat_seconds,
            "kill_grace_seconds": self.kill_grace_seconds,
            "disk_warn_percent": self.disk_warn_percent,
            "max_runtime": self.max_runtime,
        }


def validate_date(text: str) -> str:
    """``YYYY-MM-DD`` naming a real calendar day, or :class:`SpecError`."""
    if not isinstance(text, str) or not _DATE_PATTERN.match(text):
        raise SpecError(f"--date: expected YYYY-MM-DD, got {text!r}")
    try:
        date.fromisoformat(text)
    except ValueError as error:
        raise SpecError(f"--date: {text!r} is not a calendar date ({error})") from None
    return text


def validate_role(text: str) -> str:
    if not isinstance(text, str) or not NAME_PATTERN.match(text):
        raise SpecError(f"--role: expected {NAME_PATTERN.pattern}, got {text!r}")
    return text


def parse_s3_prefix(prefix: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` → ``("bucket", "a/b")``."""
    match = _S3_PREFIX.match(prefix)
    if not match:
        raise SpecError(f"s3_log_prefix: expected s3://bucket[/prefix], got {prefix!r}")
    return match.group("bucket"), (match.group("key") or "").strip("/")


def parse_spec(text: str, source: str = "spec") -> RunSpec:
    """Parse and validate spec JSON; ``source`` (a file name, ``stdin``) prefixes errors."""
    try:
        document = json.loads(text)
    except ValueError as error:
        raise SpecError(f"{source}: not valid JSON: {error}") from None
    try:
        return spec_from_document(document)
    except SpecError as error:
        raise SpecError(f"{source}: {error}") from None


def spec_from_document(document: Any) -> RunSpec:
    if isinstance(document, list):
        document = {"jobs": document}
    if not isinstance(document, dict):
        raise SpecError(f"expected a list of jobs or an object with 'jobs', got {_kind(document)}")
    _no_unknown_keys(document, RUN_KEYS, "(top level)")
    if "jobs" not in document:
        raise SpecError("jobs: missing (a list of at least one job)")
    raw_jobs = document["jobs"]
    if not isinstance(raw_jobs, list) or not raw_jobs:
        raise SpecError(f"jobs: expected a non-empty list of jobs, got {_short(raw_jobs)}")
    jobs: list[JobSpec] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_jobs):
        job = _job(raw, f"jobs[{index}]")
        if job.name in seen:
            raise SpecError(
                f"jobs[{index}].name: duplicate job name {job.name!r} (also jobs[{seen[job.name]}])"
            )
        seen[job.name] = index
        jobs.append(job)
    prefix = document.get("s3_log_prefix")
    if prefix is not None:
        if not isinstance(prefix, str):
            raise SpecError(f"s3_log_prefix: expected a string, got {_short(prefix)}")
        parse_s3_prefix(prefix)
    return RunSpec(
        jobs=tuple(jobs),
        s3_log_prefix=prefix,
        heartbeat_seconds=_seconds(document, "heartbeat_seconds", DEFAULT_HEARTBEAT_SECONDS, "", minimum=0.1),
        kill_grace_seconds=_seconds(
            document, "kill_grace_seconds", DEFAULT_KILL_GRACE_SECONDS, "", minimum=0
        ),
        disk_warn_percent=_percent(document, "disk_warn_percent", DEFAULT_DISK_WARN_PERCENT),
        max_runtime=_seconds(document, "max_runtime", None, "", minimum=None),
    )


def _job(raw: Any, where: str) -> JobSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected an object, got {_short(raw)}")
    _no_unknown_keys(raw, JOB_KEYS, where)
    for key in ("name", "argv"):
        if key not in raw:
            raise SpecError(f"{where}.{key}: missing")
    name = raw["name"]
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise SpecError(f"{where}.name: expected {NAME_PATTERN.pattern}, got {_short(name)}")
    shell = _bool(raw, "shell", where)
    argv = raw["argv"]
    if not isinstance(argv, list) or not argv:
        raise SpecError(f"{where}.argv: expected a non-empty list of strings, got {_short(argv)}")
    for position, item in enumerate(argv):
        if not isinstance(item, str):
            raise SpecError(f"{where}.argv[{position}]: expected a string, got {_short(item)}")
        if "\x00" in item:
            raise SpecError(f"{where}.argv[{position}]: NUL byte in {item!r}")
    if not argv[0]:
        raise SpecError(f"{where}.argv[0]: empty program name")
    if shell and len(argv) != 1:
        raise SpecError(
            f"{where}.argv: a shell job takes exactly one string (the command line), got {len(argv)}"
        )
    cwd = raw.get("cwd")
    if cwd is None:
        cwd = "/"
    elif not isinstance(cwd, str) or not cwd.startswith("/") or "\x00" in cwd:
        raise SpecError(f"{where}.cwd: expected an absolute path, got {_short(cwd)}")
    env = raw.get("env")
    if env is None:
        env = {}
    if not isinstance(env, dict):
        raise SpecError(f"{where}.env: expected an object of strings, got {_short(env)}")
    for key, value in env.items():
        if not _ENV_NAME.match(key):
            raise SpecError(f"{where}.env: bad variable name {key!r}")
        if key in RESERVED_ENV:
            raise SpecError(f"{where}.env.{key}: set by the agent for every job, cannot be overridden")
        if not isinstance(value, str) or "\x00" in value:
            raise SpecError(f"{where}.env.{key}: expected a string, got {_short(value)}")
    return JobSpec(
        name=name,
        argv=tuple(argv),
        shell=shell,
        cwd=cwd,
        env=dict(env),
        timeout=_seconds(raw, "timeout", None, f"{where}.", minimum=None),
        rerun_on_interrupt=_bool(raw, "rerun_on_interrupt", where),
    )


def _no_unknown_keys(document: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = [key for key in document if key not in allowed]
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _bool(document: Mapping[str, Any], key: str, where: str) -> bool:
    value = document.get(key, False)
    if not isinstance(value, bool):
        raise SpecError(f"{where}.{key}: expected true or false, got {_short(value)}")
    return value


def _seconds(
    document: Mapping[str, Any], key: str, default: float | None, where: str, minimum: float | None
) -> Any:
    value = document.get(key)
    if value is None:
        return default
    # bool is an int subclass: refuse `timeout: true`
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise SpecError(f"{where}{key}: expected a number of seconds, got {_short(value)}")
    if minimum is None and value <= 0:
        raise SpecError(f"{where}{key}: must be positive, got {value!r}")
    if minimum is not None and value < minimum:
        raise SpecError(f"{where}{key}: must be at least {minimum}, got {value!r}")
    return float(value)


def _percent(document: Mapping[str, Any], key: str, default: float) -> float:
    value = document.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise SpecError(f"{key}: expected a percentage between 0 and 100, got {_short(value)}")
    return float(value)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
