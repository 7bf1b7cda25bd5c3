"""The warm pool's config: one pydantic model, read by the reconcile DAG and by the pool's API.

Like the fleet config, an invalid file raises an error naming the file, the field and the bad
value, which Airflow shows as the DAG's import error and the API server logs at start.
"""

from __future__ import annotations

import os
import re
import string
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, model_validator

from operators.config_files import Duration, Strict, read_yaml, validate

POOL_CONFIG_ENV_VAR = "FLEET_POOL_CONFIG"
DEFAULT_POOL_CONFIG_PATH = Path(__file__).resolve().parents[2] / "dags" / "pool.yaml"
# The names a readiness URL may use: the instance's own facts, read from DescribeInstances.
URL_FIELDS = ("instance_id", "private_ip", "public_ip")
# An Auto Scaling group name: 1-255 characters, no ":" (autoscaling's own rule, kept stricter).
_GROUP_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"
# A DynamoDB table name (DynamoDB's rule).
_TABLE_NAME = r"^[A-Za-z0-9_.-]{3,255}$"

# A project id: what both a URL path segment and an EC2 tag value hold as they are.
PROJECT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class PoolConfigError(ValueError):
    """The pool config is invalid; the message names the file, the field and the value."""


class ReadinessConfig(Strict):
    """How the pool knows an instance is ready: code-server's ``/healthz``, or its port open."""

    # http(s)://… is ready on a 2xx answer; tcp://host:port when the port accepts a connection.
    url: str = "http://{private_ip}:8080/healthz"
    timeout: Duration = timedelta(seconds=2)
    # An idle instance failing this many reconciles in a row is replaced.
    failures_to_replace: int = Field(default=3, ge=1, le=100)

    @model_validator(mode="after")
    def _url(self) -> ReadinessConfig:
        match = re.fullmatch(r"(https?|tcp)://([^/\s]+)(/\S*)?", self.url)
        if not match:
            raise ValueError(
                f"readiness.url must be http(s)://host[:port]/path or tcp://host:port: {self.url!r}"
            )
        names = {name for _, name, _, _ in string.Formatter().parse(self.url) if name is not None}
        unknown = sorted(names - set(URL_FIELDS))
        if unknown:
            raise ValueError(
                f"readiness.url may use only {{{'}, {'.join(URL_FIELDS)}}}: got {{{unknown[0]}}}"
            )
        if match.group(1) == "tcp" and (match.group(3) or ":" not in match.group(2)):
            raise ValueError(f"readiness.url tcp://host:port takes a port and no path: {self.url!r}")
        return self


class PoolConfig(Strict):
    group: Annotated[str, Field(pattern=_GROUP_NAME)] = "vscode-asg"
    buffer: int = Field(default=5, ge=0, le=1000)  # idle instances kept ready
    min_size: int = Field(default=0, ge=0, le=10000)
    max_size: int = Field(default=20, ge=1, le=10000)
    max_idle: int = Field(default=10, ge=0, le=10000)  # idle above this is scaled in, oldest first
    max_idle_age: Duration = timedelta(hours=24)  # an idle instance older than this is replaced
    readiness: ReadinessConfig = ReadinessConfig()
    claim_table: Annotated[str, Field(pattern=_TABLE_NAME)] = "fleet-pool-claims"
    aws_conn_id: str = "aws_default"
    region: str | None = None

    @model_validator(mode="after")
    def _sizes(self) -> PoolConfig:
        if self.min_size > self.max_size:
            raise ValueError(f"min_size ({self.min_size}) is above max_size ({self.max_size})")
        if self.max_idle < self.buffer:
            raise ValueError(
                f"max_idle ({self.max_idle}) is below buffer ({self.buffer}): refills would be scaled in"
            )
        if self.buffer > self.max_size:
            raise ValueError(f"buffer ({self.buffer}) is above max_size ({self.max_size})")
        return self


def parse_pool_config(data: Any, source: str = "<pool config>") -> PoolConfig:
    return validate(PoolConfig, {} if data is None else data, source, "pool config", PoolConfigError)


def pool_config_path() -> Path:
    return Path(os.environ.get(POOL_CONFIG_ENV_VAR) or DEFAULT_POOL_CONFIG_PATH)


def load_pool_config(path: str | os.PathLike[str] | None = None) -> PoolConfig:
    """Read and validate the pool config (``$FLEET_POOL_CONFIG`` or ``dags/pool.yaml``)."""
    source = Path(path) if path is not None else pool_config_path()
    return parse_pool_config(read_yaml(source, "pool config", PoolConfigError), str(source))
