"""The fleet config: one pydantic model, validated when the DAG file is parsed.

An invalid file raises :class:`FleetConfigError` naming the file, the field path
(``roles[1].jobs[0].name``) and the cut bad value: Airflow shows it as the DAG's import error.
Whatever reaches the agent is checked by the agent's own rules (``instance_agent/spec.py``), so
the DAG refuses at parse time exactly what the agent would refuse on the VM.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import pendulum
from croniter import croniter
from operators.config_files import Duration, Strict, read_yaml, validate
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from instance_agent.display import shorten
from instance_agent.protocol import (
    DEFAULT_HEARTBEAT_SECONDS,
    DEFAULT_LOG_DIR,
    DEFAULT_STATE_DIR,
    MIN_HEARTBEAT_SECONDS,
    ROLE_NAME_PATTERN,
)
from instance_agent.spec import (
    MAX_JOBS,
    SpecError,
    check_argv,
    check_cwd,
    check_directory,
    check_env,
    check_job_name,
    check_s3_prefix,
    check_seconds,
    validate_role,
)

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "fleet.yaml"
CONFIG_ENV_VAR = "FLEET_CONFIG"


class FleetConfigError(ValueError):
    """The fleet config is invalid; the message names the file, the field and the value."""


def agent_rule(check: Any, *args: Any, **kwargs: Any) -> Any:
    """A validator that applies one of the agent's checks; its :class:`SpecError` becomes a
    pydantic error at the agent's location inside the field (``argv[1]``, ``env.MODE``)."""

    def validate(value: Any) -> Any:
        if value is None:
            return value
        try:
            check(value, *args, **kwargs)
        except SpecError as error:
            raise _agent_error(error) from None
        return value

    return validate


def _agent_error(error: SpecError) -> ValidationError:
    detail = _error("agent_rule", "{problem}", error.loc or (), error.value, problem=error.problem)
    return ValidationError.from_exception_data("instance_agent", [detail])


# pydantic matches these with Rust's regex, where `$` is the very end (no "tasks\n").
InstanceId = Annotated[str, StringConstraints(pattern=r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")]
# The agent's --role rule (protocol.ROLE_NAME_PATTERN, also an Airflow task group id: no dots),
# as a pattern too, so that pydantic's message names it.
RoleName = Annotated[
    str,
    StringConstraints(pattern=f"^{ROLE_NAME_PATTERN.pattern}$"),
    AfterValidator(agent_rule(validate_role)),
]
JobName = Annotated[str, AfterValidator(agent_rule(check_job_name))]
AgentPath = Annotated[str, AfterValidator(agent_rule(check_directory))]
S3Prefix = Annotated[str, AfterValidator(agent_rule(check_s3_prefix))]


def _error(
    kind: str, message: str, loc: tuple[str | int, ...], value: Any, **context: Any
) -> InitErrorDetails:
    """A pydantic error at ``loc``; ``message`` is a template of ``context``."""
    return InitErrorDetails(type=PydanticCustomError(kind, message, context), loc=loc, input=value)


def _duplicates(items: list[Any], where: str, what: str) -> list[InitErrorDetails]:
    """One error per repeated name, located at the repeat (``roles[2].name``), naming the first."""
    first: dict[str, int] = {}
    errors = []
    for index, item in enumerate(items):
        if item.name in first:
            message = "duplicate {what} name {name}, already used by {where}[{first}]"
            context = {"what": what, "name": repr(item.name), "where": where, "first": first[item.name]}
            errors.append(_error("duplicate_name", message, (where, index, "name"), item.name, **context))
        first.setdefault(item.name, index)
    return errors


def _raise(model: type[BaseModel], errors: list[InitErrorDetails]) -> None:
    # Errors raised this way keep their own location, which a ValueError from a validator cannot.
    if errors:
        raise ValidationError.from_exception_data(model.__name__, errors)


class JobConfig(Strict):
    """One business job: what the agent runs, how long it may take, whether a re-run is safe."""

    name: JobName
    # Before argv: its rule depends on it (a shell job's argv is one command line).
    shell: bool = False
    argv: list[str]
    cwd: Annotated[str | None, AfterValidator(agent_rule(check_cwd))] = None
    env: Annotated[dict[str, str], AfterValidator(agent_rule(check_env))] = Field(default_factory=dict)
    timeout: Duration
    # At most once by default: these jobs move money.
    rerun_on_interrupt: bool = False

    @field_validator("argv")
    @classmethod
    def _agent_argv(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return agent_rule(check_argv, shell=info.data.get("shell", False))(value)


class RoleConfig(Strict):
    """A worker role: one instance (or ordered candidates for one slot) and its jobs."""

    name: RoleName
    instance: InstanceId | None = None
    candidates: list[InstanceId] | None = Field(default=None, min_length=1)
    max_runtime: Duration
    heartbeat_grace: Duration = timedelta(minutes=5)
    # At most what one agent takes in one spec (instance_agent/spec.py).
    jobs: list[JobConfig] = Field(min_length=1, max_length=MAX_JOBS)

    @model_validator(mode="after")
    def _one_slot(self) -> RoleConfig:
        if self.instance is None and self.candidates is None:
            raise ValueError("give exactly one of 'instance' or 'candidates', got neither")
        if self.instance is not None and self.candidates is not None:
            raise ValueError(
                f"give exactly one of 'instance' or 'candidates', got both: instance {self.instance!r}"
                f" and candidates {shorten(self.candidates)}"
            )
        return self

    @model_validator(mode="after")
    def _unique_jobs(self) -> RoleConfig:
        _raise(type(self), _duplicates(self.jobs, "jobs", "job"))
        return self

    @property
    def instance_ids(self) -> list[str]:
        return [self.instance] if self.instance else list(self.candidates or [])


class SignerConfig(Strict):
    instance: InstanceId


def _heartbeat_seconds(value: timedelta) -> float:
    return check_seconds(value.total_seconds(), minimum=MIN_HEARTBEAT_SECONDS)


class AgentConfig(Strict):
    """How the DAG invokes the agent on a worker (``python -m instance_agent run ...``)."""

    # An argv like a job's (no NUL, strict UTF-8), with no empty word: it is the DAG's own.
    command: Annotated[
        list[Annotated[str, StringConstraints(min_length=1)]], AfterValidator(agent_rule(check_argv))
    ] = Field(default_factory=lambda: ["python3", "-m", "instance_agent"], min_length=1)
    state_dir: AgentPath = DEFAULT_STATE_DIR
    log_dir: AgentPath = DEFAULT_LOG_DIR
    # os: the OS powers off (the instance's shutdown behaviour must be "stop");
    # ec2: the agent calls StopInstances on itself.
    shutdown: Literal["os", "ec2", "none"] = "os"
    # The agent's heartbeat_seconds: a CreateTags call each time, so at least 0.1 s apart.
    heartbeat: Annotated[Duration, AfterValidator(agent_rule(_heartbeat_seconds))] = timedelta(
        seconds=DEFAULT_HEARTBEAT_SECONDS
    )


class NotifierConfig(Strict):
    """An Airflow notifier (``BaseNotifier`` subclass) by import path, with its arguments."""

    class_path: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$")]
    kwargs: dict[str, Any] = Field(default_factory=dict)


class FleetConfig(Strict):
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
            raise ValueError(f"unknown timezone {shorten(value)}") from error
        return value

    @field_validator("schedule")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"not a valid cron expression: {shorten(value)}")
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
                message = "is the signer instance (signer.instance); a worker role cannot use it"
                errors.append(_error("signer_as_worker", message, loc, self.signer.instance))
        _raise(type(self), errors)
        return self


def parse_config(data: Any, source: str = "<fleet config>") -> FleetConfig:
    return validate(FleetConfig, data, source, "fleet config", FleetConfigError)


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike[str] | None = None) -> FleetConfig:
    """Read and validate the fleet config (``$FLEET_CONFIG`` or ``dags/fleet.yaml``)."""
    source = Path(path) if path is not None else config_path()
    return parse_config(read_yaml(source, "fleet config", FleetConfigError), str(source))
