"""The fleet config: one pydantic model, validated when the DAG file is parsed.

An invalid file raises :class:`FleetConfigError` naming the file, the field path
(``roles[1].jobs[0].name``) and the bad value, which Airflow shows as the DAG's import error.
Reading it makes no AWS call and reads no Variable.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import pendulum
import yaml
from croniter import croniter
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "fleet.yaml"
CONFIG_ENV_VAR = "FLEET_CONFIG"

_DURATION = re.compile(r"^\s*(?:(?P<h>\d+)h)?\s*(?:(?P<m>\d+)m)?\s*(?:(?P<s>\d+)s)?\s*$")


class FleetConfigError(ValueError):
    """The fleet config is invalid; the message names the file, the field and the value."""


def parse_duration(value: Any) -> timedelta:
    """``90`` (seconds), ``"45s"``, ``"30m"``, ``"2h"``, ``"1h30m"`` → a positive timedelta."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):  # bool is an int subclass: refuse `timeout: true`
        raise ValueError(f"not a duration: {value!r}")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)) and any(match.groupdict().values()):
        parts = {key: int(number or 0) for key, number in match.groupdict().items()}
        seconds = parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    else:
        raise ValueError(f"not a duration (use seconds or e.g. '45s', '30m', '2h', '1h30m'): {value!r}")
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {value!r}")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
InstanceId = Annotated[str, StringConstraints(pattern=r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")]
S3Prefix = Annotated[str, StringConstraints(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duplicates(items: list[Any], where: str, what: str) -> list[InitErrorDetails]:
    """One error per repeated name, located at the repeat (``roles[2].name``), naming the first."""
    first: dict[str, int] = {}
    errors = []
    for index, item in enumerate(items):
        if item.name in first:
            errors.append(
                InitErrorDetails(
                    type=PydanticCustomError(
                        "duplicate_name",
                        "duplicate {what} name {name}, already used by {where}[{first}]",
                        {"what": what, "name": repr(item.name), "where": where, "first": first[item.name]},
                    ),
                    loc=(where, index, "name"),
                    input=item.name,
                )
            )
        first.setdefault(item.name, index)
    return errors


def _raise(model: type[BaseModel], errors: list[InitErrorDetails]) -> None:
    # Errors raised this way keep their own location, which a ValueError from a validator cannot.
    if errors:
        raise ValidationError.from_exception_data(model.__name__, errors)


class JobConfig(_Strict):
    """One business job: what the agent runs, how long it may take, whether a re-run is safe."""

    name: Name
    argv: list[Annotated[str, StringConstraints(min_length=1)]] = Field(min_length=1)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout: Duration
    shell: bool = False
    # At most once by default: these jobs move money.
    rerun_on_interrupt: bool = False

    @field_validator("cwd")
    @classmethod
    def _absolute_cwd(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"cwd must be an absolute path on the instance: {value!r}")
        return value


class RoleConfig(_Strict):
    """A worker role: one instance (or ordered candidates for one slot) and its jobs."""

    name: Name
    instance: InstanceId | None = None
    candidates: list[InstanceId] | None = Field(default=None, min_length=1)
    max_runtime: Duration
    heartbeat_grace: Duration = timedelta(minutes=5)
    jobs: list[JobConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_slot(self) -> RoleConfig:
        if self.instance is None and self.candidates is None:
            raise ValueError("give exactly one of 'instance' or 'candidates', got neither")
        if self.instance is not None and self.candidates is not None:
            raise ValueError(
                f"give exactly one of 'instance' or 'candidates', got both: instance {self.instance!r}"
                f" and candidates {self.candidates!r}"
            )
        return self

    @model_validator(mode="after")
    def _unique_jobs(self) -> RoleConfig:
        _raise(type(self), _duplicates(self.jobs, "jobs", "job"))
        return self

    @property
    def instance_ids(self) -> list[str]:
        return [self.instance] if self.instance else list(self.candidates or [])


class SignerConfig(_Strict):
    instance: InstanceId


class AgentConfig(_Strict):
    """How the DAG invokes the agent on a worker (``python -m instance_agent run ...``)."""

    command: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=lambda: ["python3", "-m", "instance_agent"], min_length=1
    )
    state_dir: str = "/var/lib/fleet-agent"
    log_dir: str = "/var/log/fleet-agent"
    # os: the OS powers off (the instance's shutdown behaviour must be "stop");
    # ec2: the agent calls StopInstances on itself.
    shutdown: Literal["os", "ec2", "none"] = "os"
    heartbeat: Duration = timedelta(seconds=60)


class NotifierConfig(_Strict):
    """An Airflow notifier (``BaseNotifier`` subclass) by import path, with its arguments."""

    class_path: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$")]
    kwargs: dict[str, Any] = Field(default_factory=dict)


class FleetConfig(_Strict):
    timezone: str = "UTC"
    schedule: str = "0 0 * * *"
    aws_conn_id: str = "aws_default"
    region: str
    signer: SignerConfig
    roles: list[RoleConfig] = Field(min_length=1)
    s3_log_prefix: S3Prefix | None = None
    notifier: NotifierConfig | None = None
    agent: AgentConfig = Field(default_factory=AgentConfig)
    # How often the DAG's waits poll AWS (one DescribeInstances for the whole fleet per poll).
    poll_interval: Duration = timedelta(seconds=30)
    # How long a worker may take to boot and bring its SSM agent online.
    boot_timeout: Duration = timedelta(minutes=10)
    # monitor.py's "still on after 00:15" alert: notify when a run is still going this long
    # after its scheduled start.
    alert_after: Duration = timedelta(minutes=15)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            pendulum.timezone(value)
        except Exception as error:
            raise ValueError(f"unknown timezone {value!r}") from error
        return value

    @field_validator("schedule")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"not a valid cron expression: {value!r}")
        return value

    @model_validator(mode="after")
    def _unique_roles(self) -> FleetConfig:
        _raise(type(self), _duplicates(self.roles, "roles", "role"))
        return self

    @model_validator(mode="after")
    def _signer_is_no_worker(self) -> FleetConfig:
        # The signer is started first and stopped last; a worker's agent would stop it mid-run.
        errors = []
        for index, role in enumerate(self.roles):
            loc: tuple[str | int, ...] | None = None
            if role.instance == self.signer.instance:
                loc = ("roles", index, "instance")
            elif role.candidates and self.signer.instance in role.candidates:
                loc = ("roles", index, "candidates", role.candidates.index(self.signer.instance))
            if loc:
                errors.append(
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "signer_as_worker",
                            "is the signer instance (signer.instance); a worker role cannot use it",
                        ),
                        loc=loc,
                        input=self.signer.instance,
                    )
                )
        _raise(type(self), errors)
        return self

    def role(self, name: str) -> RoleConfig:
        for role in self.roles:
            if role.name == name:
                return role
        raise KeyError(f"no role named {name!r}; roles are {[r.name for r in self.roles]}")


def _field_path(location: tuple[Any, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid fleet config"]
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "string_pattern_mismatch" and "pattern" in item.get("ctx", {}):
            message = f"does not match {item['ctx']['pattern']}"
        value = item.get("input")
        # Name the bad value unless the message already does (or it is a whole section).
        hidden = (isinstance(value, dict | list) and bool(value)) or repr(value) in message
        shown = "" if hidden else f" (got {value!r})"
        lines.append(f"  {_field_path(item['loc'])}: {message}{shown}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<fleet config>") -> FleetConfig:
    try:
        return FleetConfig.model_validate(data)
    except ValidationError as error:
        raise FleetConfigError(_describe(error, source)) from None


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike[str] | None = None) -> FleetConfig:
    """Read and validate the fleet config (``$FLEET_CONFIG`` or ``dags/fleet.yaml``)."""
    source = Path(path) if path is not None else config_path()
    try:
        # libyaml's loader when PyYAML has it: the pure-Python one takes ~0.2 s for 300 roles.
        data = yaml.load(source.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except OSError as error:
        raise FleetConfigError(f"{source}: cannot read the fleet config: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise FleetConfigError(f"{source}: not valid YAML: {error}") from None
    return parse_config(data, str(source))
