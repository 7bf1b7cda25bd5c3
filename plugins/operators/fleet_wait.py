"""The fleet's one wait contract: a bounded poll loop, deferred or not, and what its end means.

A wait is a trigger whose ``poll_once()`` answers ``None`` (keep waiting) or a final event,
which always carries ``status`` (``success`` | ``failed`` | ``timeout`` | ``error``) and
``message``. The triggerer runs it through ``run``, a task that is not deferrable through
``run_sync`` (:class:`FleetDeferring`); both stop after ``waiter_max_attempts`` polls.
"""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook
from airflow.providers.common.compat.sdk import conf
from airflow.triggers.base import BaseTrigger, TriggerEvent
from botocore.exceptions import BotoCoreError, ClientError

from operators.fleet_aws import (
    CONNECTION_ARGS,
    FleetError,
    connection_args,
    error_code,
    error_message,
    make_hook,
)

SUCCESS = "success"
FAILED = "failed"
TIMEOUT = "timeout"
ERROR = "error"

# Extra time the deferral's own timeout allows beyond the trigger's polls, so that the
# trigger's clearer "timeout" event normally wins and the deferral timeout is only a backstop.
DEFER_TIMEOUT_MARGIN = 60


def utcnow() -> datetime:
    return datetime.now(UTC)


def defer_timeout(waiter_delay: float, waiter_max_attempts: int) -> timedelta:
    return timedelta(seconds=waiter_delay * waiter_max_attempts + DEFER_TIMEOUT_MARGIN)


@dataclass(frozen=True)
class EventOutcome:
    """How one kind of task turns its trigger's final event into its result or its exception.

    Any status but success raises ``errors[status]`` (default :class:`FleetError`), worded by
    ``messages[status]``, else ``otherwise`` (templates of ``what``, ``status``, ``message`` and
    ``event``). No event at all counts as status ``None``.
    """

    errors: Mapping[str | None, type[Exception]] = field(default_factory=dict)
    messages: Mapping[str | None, str] = field(
        default_factory=lambda: {None: "{what}: the trigger returned no event"}
    )
    otherwise: str = "{what} {status}: {message}"

    def check(self, event: dict[str, Any] | None, what: str) -> dict[str, Any]:
        status = (event or {}).get("status")
        if event and status == SUCCESS:
            return event
        key = status if event else None
        message = self.messages.get(key, self.otherwise).format(
            what=what, status=status or FAILED, message=(event or {}).get("message", event), event=event
        )
        raise self.errors.get(key, FleetError)(message)


# The operators': every end but success is a FleetError, so the task's retries apply.
RETRYABLE = EventOutcome()
raise_for_event = RETRYABLE.check


class FleetPollTrigger(BaseTrigger):
    """Base for the fleet's bounded polling triggers: a subclass implements :meth:`poll_once`
    and names its own constructor arguments (attributes of the same names) in ``serialized_fields``.
    """

    # The provider hook a poll reads through; None: the trigger needs no AWS.
    hook_class: type[AwsGenericHook] | None = None
    serialized_fields: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        waiter_delay: float = 30,
        waiter_max_attempts: int = 60,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        hook: AwsGenericHook | None = None,
    ) -> None:
        """``hook`` (never serialized): a task that polls itself passes its own, so that its pokes,
        its synchronous wait and its ``on_kill`` share one client."""
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
        self._hook = hook

    @abstractmethod
    def poll_once(self) -> dict[str, Any] | None:
        """One batched read: ``None`` to keep waiting, or the final event payload."""

    def timeout_message(self) -> str:
        return f"gave up after {self.waiter_max_attempts} polls every {self.waiter_delay} s"

    @property
    def connection_args(self) -> dict[str, Any]:
        return connection_args(self)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        names = (*self.serialized_fields, "waiter_delay", "waiter_max_attempts", *CONNECTION_ARGS)
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            name: getattr(self, name) for name in names
        }

    @property
    def hook(self) -> Any:
        if self._hook is None:
            if self.hook_class is None:
                raise TypeError(f"{type(self).__name__} reads no AWS service: it has no hook")
            self._hook = make_hook(self.hook_class, **self.connection_args)
        return self._hook

    def poll_guarded(self) -> dict[str, Any] | None:
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
            result = await asyncio.to_thread(self.poll_guarded)
            if result is not None:
                yield TriggerEvent(result)
                return
            if attempt < self.waiter_max_attempts:
                await asyncio.sleep(self.waiter_delay)
        yield TriggerEvent(self._timeout_event())

    def run_sync(self, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
        """The same bounded loop as :meth:`run`, blocking."""
        for attempt in range(1, self.waiter_max_attempts + 1):
            result = self.poll_guarded()
            if result is not None:
                return result
            if attempt < self.waiter_max_attempts:
                sleep(self.waiter_delay)
        return self._timeout_event()


class FleetDeferring:
    """Mixin for the fleet's tasks: a task that is not ``deferrable`` runs the very trigger it
    would have deferred to, so both ways decide the same."""

    # The synchronous wait's pause between two polls; swappable in tests.
    sleep: Callable[[float], None] = staticmethod(time.sleep)

    def __init__(
        self,
        *,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        """:param deferrable: wait in the triggerer instead of a worker slot"""
        super().__init__(**kwargs)
        self.deferrable = deferrable

    def defer_or_wait(
        self,
        trigger: FleetPollTrigger,
        *,
        method_name: str,
        kwargs: dict[str, Any] | None = None,
        timeout: timedelta | None = None,
    ) -> dict[str, Any]:
        """Defer to ``trigger`` (resuming in ``method_name``), or run it here and return its event.

        Airflow 3.3 does not apply ``execution_timeout`` to a deferred task: each deferral has a
        ``timeout``, by default the trigger's polls and :data:`DEFER_TIMEOUT_MARGIN`.
        """
        if self.deferrable:
            self.defer(  # type: ignore[attr-defined]
                trigger=trigger,
                method_name=method_name,
                kwargs=kwargs,
                timeout=timeout or defer_timeout(trigger.waiter_delay, trigger.waiter_max_attempts),
            )
        return trigger.run_sync(sleep=self.sleep)
