"""What the DAG sends, validated before anything starts or is written.

The spec is JSON: a list of jobs, or an object holding ``jobs`` and the run's settings (the
fields of :class:`JobSpec` and :class:`RunSpec`; instance_agent/README.md describes each). Every
key is known: a typo (``rerun_on_interupt``) is an error, never a silent default. The field
rules are in :mod:`instance_agent.checks`, which the DAG's fleet config calls too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

from instance_agent.checks import (
    DEFAULT_DISK_WARN_PERCENT,
    MAX_JOBS,
    MAX_SPEC_BYTES,
    SpecError,
    check_argv,
    check_bool,
    check_cwd,
    check_env,
    check_job_name,
    check_percent,
    check_s3_prefix,
    check_seconds,
)

# Re-exported: the DAG's fleet config and the tests take the agent's rules from here.
from instance_agent.checks import check_directory as check_directory
from instance_agent.checks import check_os_text as check_os_text
from instance_agent.checks import validate_date as validate_date
from instance_agent.checks import validate_role as validate_role
from instance_agent.display import one_line, shorten
from instance_agent.protocol import (
    DEFAULT_HEARTBEAT_SECONDS,
    DEFAULT_KILL_GRACE_SECONDS,
    MIN_HEARTBEAT_SECONDS,
)


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
        return {**asdict(self), "argv": list(self.argv)}


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
        return {**asdict(self), "jobs": [job.to_dict() for job in self.jobs]}


# The keys a spec may hold: the fields, so that a new field is a new key.
JOB_KEYS = tuple(item.name for item in fields(JobSpec))
RUN_KEYS = tuple(item.name for item in fields(RunSpec))


class _DuplicateKey(ValueError):
    pass


def parse_spec(data: str | bytes, source: str = "spec") -> RunSpec:
    """Parse and validate spec JSON; ``source`` (a file name, ``stdin``) prefixes errors.

    Bytes are decoded as strict UTF-8 whatever the locale: a bad byte is refused, never passed
    on to a job (surrogateescape).
    """
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"larger than {MAX_SPEC_BYTES // (1 << 20)} MiB, not a job spec", None, source=source)
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            byte = data[error.start]
            problem = f"not valid UTF-8 at byte offset {error.start} (byte 0x{byte:02x}: {error.reason})"
            raise SpecError(problem, None, source=source) from None
    try:
        document = json.loads(data, object_pairs_hook=_object_without_duplicates)
    except RecursionError:
        raise SpecError("not valid JSON: nested too deeply", None, source=source) from None
    except _DuplicateKey as error:
        raise SpecError(str(error), None, source=source) from None
    except ValueError as error:  # JSONDecodeError, or an integer over Python's 4300 digits
        raise SpecError(f"not valid JSON: {one_line(str(error), 200)}", None, source=source) from None
    try:
        return spec_from_document(document)
    except SpecError as error:
        raise error.from_source(source) from None


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys: `"timeout": 5, "timeout": 50000` would
    # silently mean 50000, so a repeated key is refused like an unknown one.
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _DuplicateKey(f"duplicate key {shorten(key)} in one JSON object: which value is meant?")
        document[key] = value
    return document


def spec_from_document(document: Any) -> RunSpec:
    if isinstance(document, list):
        document = {"jobs": document}
    if not isinstance(document, dict):
        raise SpecError(f"expected a list of jobs or an object with 'jobs', got {_kind(document)}", ())
    _no_unknown_keys(document, RUN_KEYS)
    if "jobs" not in document:
        raise SpecError("missing (a list of at least one job)", ("jobs",))
    raw_jobs = document["jobs"]
    if not isinstance(raw_jobs, list) or not raw_jobs:
        raise SpecError.expected("a non-empty list of jobs", raw_jobs, ("jobs",))
    if len(raw_jobs) > MAX_JOBS:
        raise SpecError(f"{len(raw_jobs)} jobs, at most {MAX_JOBS} per run", ("jobs",), raw_jobs)
    jobs: list[JobSpec] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_jobs):
        try:
            job = check_job(raw)
        except SpecError as error:
            raise error.within("jobs", index) from None
        if job.name in seen:
            raise SpecError(
                f"duplicate job name {job.name!r} (also jobs[{seen[job.name]}])",
                ("jobs", index, "name"),
                job.name,
            )
        seen[job.name] = index
        jobs.append(job)
    settings = {key: _optional(document, key, check, None) for key, check in _RUN_CHECKS.items()}
    # An absent or null setting keeps the RunSpec default.
    return RunSpec(jobs=tuple(jobs), **{key: value for key, value in settings.items() if value is not None})


_RUN_CHECKS: dict[str, Callable[[Any], Any]] = {
    "s3_log_prefix": check_s3_prefix,
    "heartbeat_seconds": lambda value: check_seconds(value, minimum=MIN_HEARTBEAT_SECONDS),
    "kill_grace_seconds": lambda value: check_seconds(value, minimum=0),
    "disk_warn_percent": check_percent,
    "max_runtime": check_seconds,
}


def check_job(raw: Any) -> JobSpec:
    """One job of the spec; errors are located relative to it (``argv[1]``)."""
    if not isinstance(raw, dict):
        raise SpecError.expected("an object", raw)
    _no_unknown_keys(raw, JOB_KEYS)
    for key in ("name", "argv"):
        if key not in raw:
            raise SpecError("missing", (key,))
    name = _required(raw, "name", check_job_name)
    shell = _optional(raw, "shell", check_bool, False)
    return JobSpec(
        name=name,
        argv=_required(raw, "argv", lambda value: check_argv(value, shell=shell)),
        shell=shell,
        cwd=_optional(raw, "cwd", check_cwd, "/"),
        env=_optional(raw, "env", check_env, {}),
        timeout=_optional(raw, "timeout", check_seconds, None),
        rerun_on_interrupt=_optional(raw, "rerun_on_interrupt", check_bool, False),
    )


def _required(document: dict[str, Any], key: str, check: Callable[[Any], Any]) -> Any:
    try:
        return check(document[key])
    except SpecError as error:
        raise error.within(key) from None


def _optional(document: dict[str, Any], key: str, check: Callable[[Any], Any], default: Any) -> Any:
    """``default`` when the key is absent or null, else the checked value."""
    if document.get(key) is None:
        return default
    return _required(document, key, check)


def _no_unknown_keys(document: dict[Any, Any], allowed: tuple[str, ...]) -> None:
    unknown = [key for key in document if key not in allowed]
    if unknown:
        raise SpecError(f"unknown key {shorten(unknown[0])} (allowed: {', '.join(sorted(allowed))})", ())


def _kind(value: Any) -> str:
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value))
    return f"{kind} {shorten(value)}" if kind else shorten(value)
