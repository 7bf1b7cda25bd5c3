"""The one bounded wait loop every fleet wait uses, deferred or not.

A wait is a trigger whose ``poll_once()`` makes one batched read and answers either ``None``
(keep waiting) or a final event payload. The triggerer runs it through :meth:`run` (each poll in
a worker thread so the event loop never blocks); the synchronous fallback of an operator or
sensor runs the very same object through :meth:`run_sync`. Both stop after
``waiter_max_attempts`` polls, so no wait is without a bound.

Event payloads always carry ``status`` (``success`` | ``failed`` | ``timeout`` | ``error``)
and ``message``; :func:`raise_for_event` turns anything but success into an exception.
"""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from botocore.exceptions import BotoCoreError, ClientError

from operators.fleet_aws import FleetError, error_code, error_message

SUCCESS = "success"
FAILED = "failed"
TIMEOUT = "timeout"
ERROR = "error"

# Extra time the deferral's own timeout allows beyond the trigger's polls, so that the
# trigger's clearer "timeout" event normally wins and the deferral timeout is only a backstop.
DEFER_TIMEOUT_MARGIN = 60


def defer_timeout(waiter_delay: float, waiter_max_attempts: int) -> timedelta:
    return timedelta(seconds=waiter_delay * waiter_max_attempts + DEFER_TIMEOUT_MARGIN)


def raise_for_event(event: dict[str, Any] | None, what: str) -> dict[str, Any]:
    """Return a success event; raise :class:`FleetError` with the event's message otherwise."""
    if not event:
        raise FleetError(f"{what}: the trigger returned no event")
    if event.get("status") != SUCCESS:
        raise FleetError(f"{what} {event.get('status', 'failed')}: {event.get('message', event)}")
    return event


class FleetPollTrigger(BaseTrigger):
    """Base for the fleet's bounded polling triggers.

    Subclasses implement :meth:`poll_once` and :meth:`_serialized_args`, and call
    ``super().__init__`` with the shared arguments.
    """

    def __init__(
        self,
        *,
        waiter_delay: float = 30,
        waiter_max_attempts: int = 60,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if waiter_max_attempts < 1:
            raise ValueError(f"waiter_max_attempts must be at least 1, got {waiter_max_attempts!r}")
        if waiter_delay < 0:
            raise ValueError(f"waiter_delay must not be negative, got {waiter_delay!r}")
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config

    # -- what subclasses provide ----------------------------------------------------------------

    @abstractmethod
    def poll_once(self) -> dict[str, Any] | None:
        """One batched read: ``None`` to keep waiting, or the final event payload."""

    @abstractmethod
    def _serialized_args(self) -> dict[str, Any]:
        """The subclass's own constructor arguments (JSON-serializable)."""

    def timeout_message(self) -> str:
        return f"gave up after {self.waiter_max_attempts} polls every {self.waiter_delay} s"

    # -- shared machinery -----------------------------------------------------------------------

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                **self._serialized_args(),
                "waiter_delay": self.waiter_delay,
                "waiter_max_attempts": self.waiter_max_attempts,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
            },
        )

    @cached_property
    def hook_args(self) -> dict[str, Any]:
        return {
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "botocore_config": self.botocore_config,
        }

    def _poll_guarded(self) -> dict[str, Any] | None:
        """``poll_once`` with AWS and fleet errors turned into an ``error`` event."""
        try:
            return self.poll_once()
        except FleetError as error:
            return {"status": ERROR, "message": str(error)}
        except ClientError as error:
            return {"status": ERROR, "message": f"{error_code(error)}: {error_message(error)}"}
        except BotoCoreError as error:
            return {"status": ERROR, "message": str(error)}

    def _timeout_event(self) -> dict[str, Any]:
        return {"status": TIMEOUT, "message": self.timeout_message()}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        for attempt in range(1, self.waiter_max_attempts + 1):
            # boto3 is blocking: poll in a thread so the triggerer's loop keeps serving others.
            result = await asyncio.to_thread(self._poll_guarded)
            if result is not None:
                yield TriggerEvent(result)
                return
            if attempt < self.waiter_max_attempts:
                await asyncio.sleep(self.waiter_delay)
        yield TriggerEvent(self._timeout_event())

    def run_sync(self, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
        """The same bounded loop as :meth:`run`, blocking: the non-deferrable fallback."""
        for attempt in range(1, self.waiter_max_attempts + 1):
            result = self._poll_guarded()
            if result is not None:
                return result
            if attempt < self.waiter_max_attempts:
                sleep(self.waiter_delay)
        return self._timeout_event()
