"""What every fleet operator, sensor and trigger shares: hooks, retries, errors, ID lists.

Throttling is botocore's to retry (``standard`` mode): no code here sleeps on its own for it.
"""

from __future__ import annotations

import ast
import copy
import functools
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook
from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook
from airflow.providers.amazon.aws.hooks.ssm import SsmHook
from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowNotFoundException,
    BaseHook,
)
from botocore import UNSIGNED
from botocore.exceptions import ClientError

# botocore retries throttling and transient errors itself in "standard" mode with exponential
# backoff and full jitter (capped at 20 s). botocore counts ``max_attempts`` as retries: 8 retries,
# 9 attempts in all, bound one call to at most about 90 s of backoff.
DEFAULT_RETRIES: dict[str, Any] = {"mode": "standard", "max_attempts": 8}


class FleetError(AirflowException):
    """A fleet operation failed; the message names the instance(s) and the cause."""


class FleetStateFailure(FleetError, AirflowFailException):
    """Instances reached a state the wait cannot come back from (terminated, agent silent, …):
    no retries, which would read the same state again. Transient trouble stays a :class:`FleetError`."""


def with_default_retries(
    botocore_config: dict[str, Any] | None, aws_conn_id: str | None = None
) -> dict[str, Any]:
    """The botocore config of a fleet hook: the user's, with bounded standard-mode retries unless
    they chose their own.

    The user's is the operator's ``botocore_config``, else the connection's ``config_kwargs``:
    the provider reads those only for a hook given no config, so they are read here.
    """
    if botocore_config:
        config = copy.deepcopy(dict(botocore_config))
    else:
        config = connection_config_kwargs(aws_conn_id)
    config.setdefault("retries", dict(DEFAULT_RETRIES))
    return config


def connection_config_kwargs(aws_conn_id: str | None) -> dict[str, Any]:
    """The ``config_kwargs`` of an AWS connection's extra (a copy), as the provider reads them."""
    if not aws_conn_id:
        return {}
    try:
        connection = BaseHook.get_connection(aws_conn_id)
    except AirflowNotFoundException:
        return {}  # the hook itself warns about it and falls back to boto3's defaults
    config_kwargs = connection.extra_dejson.get("config_kwargs")
    if not isinstance(config_kwargs, dict):
        return {}
    config = copy.deepcopy(config_kwargs)
    if config.get("signature_version") == "unsigned":
        config["signature_version"] = UNSIGNED
    return config


def hook_parameters(
    hook_class: type, aws_conn_id: str | None, botocore_config: dict[str, Any] | None
) -> dict[str, Any]:
    """What a fleet hook adds to the provider's hook arguments: bounded retries, and for EC2 the
    client API (the fleet reads pages of DescribeInstances, which the resource API does not offer)."""
    extra: dict[str, Any] = {"config": with_default_retries(botocore_config, aws_conn_id)}
    if issubclass(hook_class, EC2Hook):
        extra["api_type"] = "client_type"
    return extra


# What names an AWS connection, on every fleet task and trigger alike.
CONNECTION_ARGS = ("aws_conn_id", "region_name", "verify", "botocore_config")


def connection_args(holder: Any) -> dict[str, Any]:
    return {name: getattr(holder, name) for name in CONNECTION_ARGS}


def make_hook(
    hook_class: type[AwsGenericHook],
    aws_conn_id: str | None,
    region_name: str | None,
    verify: bool | str | None = None,
    botocore_config: dict[str, Any] | None = None,
) -> Any:
    """A provider hook as every fleet operator, sensor and trigger makes it."""
    return hook_class(
        aws_conn_id=aws_conn_id,
        region_name=region_name,
        verify=verify,
        **hook_parameters(hook_class, aws_conn_id, botocore_config),
    )


make_ec2_hook = functools.partial(make_hook, EC2Hook)
make_ssm_hook = functools.partial(make_hook, SsmHook)


class FleetAwsTask:
    """Mixin for the fleet's ``AwsBaseOperator``/``AwsBaseSensor`` subclasses (put it before them):
    its hook's parameters, the connection arguments its triggers get, and an EC2 hook for the
    tasks whose own hook is another service's (they read the agent's instance tags)."""

    aws_hook_class: type[AwsGenericHook]
    aws_conn_id: str | None
    region_name: str | None
    verify: bool | str | None
    botocore_config: dict[str, Any] | None

    @property
    def _hook_parameters(self) -> dict[str, Any]:
        return {
            **super()._hook_parameters,  # type: ignore[misc]
            **hook_parameters(self.aws_hook_class, self.aws_conn_id, self.botocore_config),
        }

    @property
    def connection_args(self) -> dict[str, Any]:
        return connection_args(self)

    @cached_property
    def ec2_hook(self) -> EC2Hook:
        if issubclass(self.aws_hook_class, EC2Hook):
            return self.hook  # type: ignore[attr-defined]
        return make_ec2_hook(**self.connection_args)


def error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def error_message(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Message", str(error))


def chunked(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def normalize_instance_ids(instance_ids: Iterable[str] | str, what: str = "instance_ids") -> list[str]:
    """A de-duplicated, order-preserving list of IDs; a bad value raises naming ``what``."""
    if isinstance(instance_ids, str) and instance_ids.strip().startswith("["):
        # A template that rendered a list to its text, e.g. "['i-1', 'i-2']" from an XCom.
        try:
            instance_ids = ast.literal_eval(instance_ids.strip())
        except (ValueError, SyntaxError):
            raise ValueError(f"{what} is not a list of EC2 instance IDs: {instance_ids!r}") from None
        if not isinstance(instance_ids, list | tuple):
            raise ValueError(f"{what} is not a list of EC2 instance IDs: {instance_ids!r}")
    if isinstance(instance_ids, str):
        # A template that rendered to one ID, or a comma-separated list.
        instance_ids = [part.strip() for part in instance_ids.split(",")]
    ids = list(dict.fromkeys(instance_ids))
    bad = [value for value in ids if not isinstance(value, str) or not value.startswith("i-")]
    if not ids:
        raise ValueError(f"{what} is empty: give at least one EC2 instance ID")
    if bad:
        raise ValueError(f"{what} holds values that are not EC2 instance IDs: {bad!r}")
    return ids


def some(items: Sequence[str], limit: int = 10) -> str:
    """``items`` for a message: the first ``limit`` of them, then how many more."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"
