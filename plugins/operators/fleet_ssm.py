"""The fleet's SSM service layer: Run Command statuses, batch sizes, and the calls on them.

Like the provider's ``SsmHook`` methods, these take the client and know SSM's limits; the
operators and triggers decide what to do with the answers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from operators.fleet_aws import chunked, error_code, error_message, some
from operators.fleet_wait import FAILED, SUCCESS

# SendCommand and CancelCommand accept at most 50 instance IDs per request.
SSM_INSTANCE_BATCH = 50
# DescribeInstanceInformation's InstanceIds filter takes up to 100 values, but a page holds at
# most 50 results: batches of 50 cost one call each when nothing else forces a second page.
AGENT_INFO_BATCH = 50
# ListCommandInvocations pages hold at most 50, which is also the most instances one command has.
INVOCATIONS_PAGE = 50

# SendCommand refuses longer comments.
COMMENT_MAX = 100

PING_ONLINE = "Online"
NOT_REGISTERED = "not registered"

SUCCESS_STATUS = "Success"
# Still on its way. "Cancelling" ends in "Cancelled", which is when the pair fails.
IN_FLIGHT_STATUSES = frozenset({"Pending", "InProgress", "Delayed", "Cancelling"})
# Terminal failures: the Status values, and the finer StatusDetails values SSM reports beside them.
FAILED_STATUSES = frozenset(
    {
        "Failed",
        "Cancelled",
        "TimedOut",
        "DeliveryTimedOut",
        "ExecutionTimedOut",
        "Undeliverable",
        "Terminated",
        "InvalidPlatform",
        "AccessDenied",
    }
)
NOT_LISTED = "not listed yet"

# Tails travel in the trigger event and in XCom: keep each one small whatever the line lengths.
TAIL_MAX_CHARS = 4000


def tail(text: str | None, lines: int) -> str:
    """The last ``lines`` lines of ``text``, at most :data:`TAIL_MAX_CHARS` characters."""
    if not text or lines <= 0:
        return ""
    kept = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return kept[-TAIL_MAX_CHARS:]


def duration_seconds(start: str | None, end: str | None) -> float | None:
    """Seconds between two SSM ``StringDateTime`` values; ``None`` when either is missing."""
    try:
        return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 3)
    except (TypeError, ValueError):
        return None


def invocation_outcome(status: str, details: str | None) -> str:
    """``success``, ``failed`` or ``waiting`` for one invocation's Status and StatusDetails."""
    if status == SUCCESS_STATUS:
        return SUCCESS
    if status in IN_FLIGHT_STATUSES:
        return "waiting"
    if status in FAILED_STATUSES or details in FAILED_STATUSES:
        return FAILED
    # A status this code does not know: waiting is safe because every wait is bounded, and the
    # timeout message will name the status.
    return "waiting"


def describe_status(status: str, details: str | None) -> str:
    return f"{status} ({details})" if details and details != status else status


def cancel_commands(
    client: Any, command_instances: Mapping[str, Sequence[str]], log: logging.Logger | Any
) -> list[str]:
    """Ask SSM to cancel each command on its instances; best effort. Returns the accepted IDs."""
    cancelled = []
    for command_id, instance_ids in command_instances.items():
        try:
            client.cancel_command(CommandId=command_id, InstanceIds=list(instance_ids))
        except ClientError as error:
            # A command that already ended cannot be cancelled; the others still should be.
            log.warning(
                "Could not cancel SSM command %s on %s: %s: %s",
                command_id,
                some(list(instance_ids)),
                error_code(error),
                error_message(error),
            )
            continue
        log.info("Asked SSM to cancel command %s on %s", command_id, some(list(instance_ids)))
        cancelled.append(command_id)
    return cancelled


def describe_agents(client: Any, instance_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """DescribeInstanceInformation for the given instances: one call per 50 IDs, pages followed.

    Instances SSM does not know are absent from the answer. When SSM refuses a whole batch as
    ``InvalidInstanceId`` (an instance that never registered), that batch is absent too.
    """
    found: dict[str, dict[str, Any]] = {}
    paginator = client.get_paginator("describe_instance_information")
    for batch in chunked(list(instance_ids), AGENT_INFO_BATCH):
        try:
            for page in paginator.paginate(
                Filters=[{"Key": "InstanceIds", "Values": batch}],
                PaginationConfig={"PageSize": AGENT_INFO_BATCH},
            ):
                for info in page.get("InstanceInformationList", []):
                    found[info["InstanceId"]] = info
        except ClientError as error:
            if error_code(error) != "InvalidInstanceId":
                raise
    return found
