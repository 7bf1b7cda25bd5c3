"""The rule for every value the agent takes, for the agent and the DAG alike.

Each ``check_*`` returns the value (normalised) or raises :class:`SpecError` located *relative
to that value* (``loc=(1,)``), which the caller places: ``jobs[0].argv[1]`` in a spec,
``roles[0].jobs[0].argv[1]`` in the DAG's fleet config, which calls these very functions.

A string that reaches the OS must be encodable as UTF-8 strictly and hold no NUL: execve takes
NUL-terminated C strings, and a lone surrogate has no encoding (Python would raise while
starting the job, or pass a raw byte through surrogateescape). Patterns are matched whole
(``fullmatch``: a ``$`` would let ``"tasks\\n"`` through).
"""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Any

from instance_agent.display import field_path, label, shorten
from instance_agent.protocol import JOB_NAME_PATTERN, ROLE_NAME_PATTERN

_DATE_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The key part may not hold control characters: S3 answers in XML 1.0, which cannot carry them.
_S3_PREFIX = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](?:/[^\x00-\x1f\x7f]*)?")

# The agent sets these for every job; a spec may not override them.
RESERVED_ENV = ("RUN_DATE", "ROLE")

DEFAULT_DISK_WARN_PERCENT = 80.0
# Ten years: no timeout of a daily run is longer, and every such number fits a float and a
# timedelta with room to spare (10**400 does not fit a float; 1e300 does not fit a timedelta).
MAX_SECONDS = 3650 * 86400
# Each job is a process, a log file and a record: hundreds are a generated list gone wrong.
MAX_JOBS = 100
# The spec comes through an SSM command (a few kB); a bigger input is not a spec. The agent
# reads at most this much, so `--spec /dev/zero` is refused instead of filling the memory.
MAX_SPEC_BYTES = 1 << 20


class SpecError(ValueError):
    """Bad input: one line naming the field and the bad value, cut to be readable.

    ``loc`` is the path of the bad value (``("jobs", 0, "argv", 1)``), or ``None`` for the input
    as a whole (not JSON); ``source`` names the input (a file, ``stdin``).
    """

    def __init__(
        self, problem: str, loc: tuple[Any, ...] | None = (), value: Any = None, *, source: str | None = None
    ):
        self.problem = problem
        self.loc = None if loc is None else tuple(loc)
        self.value = value
        self.source = source
        super().__init__(self._message())

    def _message(self) -> str:
        parts = [] if self.source is None else [label(self.source)]
        if self.loc is not None:
            parts.append(field_path(self.loc))
        return ": ".join([*parts, self.problem])

    @classmethod
    def expected(cls, what: str, value: Any, loc: tuple[Any, ...] = ()) -> SpecError:
        """``expected <what>, got <value>``: the refusal of a value of the wrong kind."""
        return cls(f"expected {what}, got {shorten(value)}", loc, value)

    def within(self, *outer: Any) -> SpecError:
        return SpecError(self.problem, (*outer, *(self.loc or ())), self.value, source=self.source)

    def from_source(self, source: str) -> SpecError:
        return SpecError(self.problem, self.loc, self.value, source=source)


def _within(loc: Any, check: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return check(value, *args, **kwargs)
    except SpecError as error:
        raise error.within(loc) from None


def check_os_text(value: Any, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise SpecError.expected(what, value)
    if "\x00" in value:
        at = value.index("\x00")
        raise SpecError(f"NUL byte at character {at}, which the OS cannot take: {shorten(value)}", (), value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        problem = (
            f"not encodable as UTF-8 (lone surrogate {value[error.start]!r} at character {error.start}): "
            f"{shorten(value)}"
        )
        raise SpecError(problem, (), value) from None
    return value


def check_job_name(value: Any) -> str:
    if not isinstance(value, str) or not JOB_NAME_PATTERN.fullmatch(value):
        raise SpecError.expected(f"a name matching {JOB_NAME_PATTERN.pattern}", value)
    return value


def check_argv(value: Any, *, shell: bool = False) -> tuple[str, ...]:
    """The program (or a shell job's one command line) not empty; later arguments may be (``grep "" f``)."""
    if not isinstance(value, (list, tuple)) or not value:
        raise SpecError.expected("a non-empty list of strings", value)
    for position, item in enumerate(value):
        _within(position, check_os_text, item)
    if not value[0]:
        raise SpecError("empty command line" if shell else "empty program name", (0,), value[0])
    if shell and len(value) != 1:
        raise SpecError(
            f"a shell job takes exactly one string (the command line), got {len(value)}", (), value
        )
    return tuple(value)


def check_cwd(value: Any) -> str:
    check_os_text(value, "an absolute path")
    if not value.startswith("/"):
        raise SpecError.expected("an absolute path", value)
    return value


def check_directory(value: Any) -> str:
    check_os_text(value, "a directory")
    if not value:
        raise SpecError("empty: name a directory", (), value)
    return value


def check_env(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise SpecError.expected("an object of strings", value)
    for key, item in value.items():
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            raise SpecError(f"bad variable name {shorten(key)} (expected {_ENV_NAME.pattern})", (), key)
        if key in RESERVED_ENV:
            raise SpecError("set by the agent for every job, cannot be overridden", (key,), item)
        _within(key, check_os_text, item)
    return dict(value)


def check_s3_prefix(value: Any) -> str:
    check_os_text(value)
    if not _S3_PREFIX.fullmatch(value):
        raise SpecError.expected("s3://bucket[/prefix]", value)
    return value


def check_seconds(value: Any, *, minimum: float | None = None) -> float:
    # bool is an int subclass: refuse `timeout: true`
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError.expected("a number of seconds", value)
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError.expected("a finite number of seconds", value)
    if minimum is None and value <= 0:
        raise SpecError(f"must be positive, got {shorten(value)}", (), value)
    if minimum is not None and value < minimum:
        raise SpecError(f"must be at least {minimum:g}, got {shorten(value)}", (), value)
    # Compared before float(): an int too large for a float is refused, not an OverflowError.
    if value > MAX_SECONDS:
        raise SpecError(
            f"must be at most {MAX_SECONDS} s ({MAX_SECONDS // 86400} days), got {shorten(value)}", (), value
        )
    return float(value)


def check_percent(value: Any) -> float:
    # NaN fails both comparisons; an int of any size compares without conversion.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise SpecError.expected("a percentage between 0 and 100", value)
    return float(value)


def check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecError.expected("true or false", value)
    return value


def validate_date(text: Any) -> str:
    if not isinstance(text, str) or not _DATE_PATTERN.fullmatch(text):
        raise SpecError.expected("YYYY-MM-DD", text, ("--date",))
    try:
        date.fromisoformat(text)
    except ValueError as error:
        raise SpecError(f"{text!r} is not a calendar date ({error})", ("--date",), text) from None
    return text


def validate_role(text: Any) -> str:
    if not isinstance(text, str) or not ROLE_NAME_PATTERN.fullmatch(text):
        raise SpecError.expected(f"a name matching {ROLE_NAME_PATTERN.pattern}", text, ("--role",))
    return text
