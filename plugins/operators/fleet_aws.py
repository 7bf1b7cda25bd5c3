"""What every fleet operator, sensor and trigger shares: hooks, retries, batched reads, errors.

The provider's hooks give us credentials from the Airflow connection; botocore's own retry
machinery (``standard`` mode: exponential backoff with jitter, bounded attempts) handles
throttling (``RequestLimitExceeded``, ``Throttling``) so no code here sleeps on its own for it.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

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

from instance_agent.protocol import AgentReport

# botocore retries throttling and transient errors itself in "standard" mode with exponential
# backoff and full jitter (capped at 20 s). botocore counts ``max_attempts`` as retries: 8 retries,
# 9 attempts in all, bound one call to at most about 90 s of backoff.
DEFAULT_RETRIES: dict[str, Any] = {"mode": "standard", "max_attempts": 8}

# DescribeInstances refuses more than 1000 IDs in one request.
DESCRIBE_BATCH = 1000

# EC2 errors that mean "no room for this instance now", where trying another candidate helps.
CAPACITY_ERRORS = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientCapacityOnOutpost",
    }
)

NOT_FOUND_ERRORS = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})

# EC2 instance states. "Transitional" states are waited out before start or stop.
TRANSITIONAL_STATES = frozenset({"pending", "stopping", "shutting-down"})
GONE_STATES = frozenset({"shutting-down", "terminated"})


class FleetError(AirflowException):
    """A fleet operation failed; the message names the instance(s) and the cause."""


class FleetStateFailure(FleetError, AirflowFailException):
    """Instances reached a state the wait cannot come back from (terminated, agent silent, …).

    Being an ``AirflowFailException``, it fails the task without retries: a retry would read the
    same state again at once. Transient trouble (API errors past botocore's retries) stays a
    plain :class:`FleetError`, to which task retries apply.
    """


def with_default_retries(
    botocore_config: dict[str, Any] | None, aws_conn_id: str | None = None
) -> dict[str, Any]:
    """The botocore config of a fleet hook: the user's, with bounded standard-mode retries unless
    they chose their own.

    "The user's" follows the Amazon provider's precedence: the operator's ``botocore_config``
    when it is given, else the ``config_kwargs`` of the connection's extra. The provider reads
    those only when the hook gets no config at all, so a hook given just our default retries
    would silently drop the connection's settings (its ``retries`` among them): read them here,
    and let them win over the defaults.
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


def make_ec2_hook(
    aws_conn_id: str | None,
    region_name: str | None,
    verify: bool | str | None = None,
    botocore_config: dict[str, Any] | None = None,
) -> EC2Hook:
    return EC2Hook(
        aws_conn_id=aws_conn_id,
        region_name=region_name,
        verify=verify,
        config=with_default_retries(botocore_config, aws_conn_id),
        api_type="client_type",
    )


def make_ssm_hook(
    aws_conn_id: str | None,
    region_name: str | None,
    verify: bool | str | None = None,
    botocore_config: dict[str, Any] | None = None,
) -> SsmHook:
    return SsmHook(
        aws_conn_id=aws_conn_id,
        region_name=region_name,
        verify=verify,
        config=with_default_retries(botocore_config, aws_conn_id),
    )


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


@dataclass(frozen=True)
class InstanceView:
    """One instance as one DescribeInstances call saw it."""

    instance_id: str
    state: str
    tags: dict[str, str] = field(default_factory=dict)
    state_reason: str | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> InstanceView:
        return cls(
            instance_id=data["InstanceId"],
            state=data["State"]["Name"],
            tags={tag["Key"]: tag["Value"] for tag in data.get("Tags", [])},
            state_reason=(data.get("StateReason") or {}).get("Message"),
        )

    @property
    def report(self) -> AgentReport | None:
        return AgentReport.from_tags(self.tags)

    def to_xcom(self) -> dict[str, Any]:
        return {"state": self.state, "tags": dict(self.tags)}


def describe_instances(client: Any, instance_ids: Sequence[str]) -> dict[str, InstanceView]:
    """Read the state and tags of every instance: one call per 1000 IDs, pages followed.

    An unknown or malformed ID raises :class:`FleetError` naming it.
    """
    views: dict[str, InstanceView] = {}
    paginator = client.get_paginator("describe_instances")
    for batch in chunked(list(instance_ids), DESCRIBE_BATCH):
        try:
            for page in paginator.paginate(InstanceIds=batch):
                for reservation in page.get("Reservations", []):
                    for data in reservation.get("Instances", []):
                        view = InstanceView.from_api(data)
                        views[view.instance_id] = view
        except ClientError as error:
            if error_code(error) in NOT_FOUND_ERRORS:
                raise FleetError(
                    f"EC2 instance not found among {_short(batch)}: {error_message(error)}"
                ) from error
            raise
    missing = [instance_id for instance_id in instance_ids if instance_id not in views]
    if missing:
        raise FleetError(f"EC2 instance(s) {', '.join(missing)} not found (DescribeInstances)")
    return views


def _short(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(ids[:limit])
    return shown if len(ids) <= limit else f"{shown} and {len(ids) - limit} more"
