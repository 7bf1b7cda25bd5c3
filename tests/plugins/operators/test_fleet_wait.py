"""Tests for operators.fleet_wait: the one bounded poll loop, deferred and synchronous."""

from __future__ import annotations

import asyncio
import importlib
from datetime import timedelta
from typing import Any

import pytest
from airflow.triggers.base import TriggerEvent
from botocore.exceptions import ClientError, EndpointConnectionError
from operators.fleet_aws import FleetError
from operators.fleet_wait import (
    DEFER_TIMEOUT_MARGIN,
    ERROR,
    FAILED,
    SUCCESS,
    TIMEOUT,
    FleetPollTrigger,
    defer_timeout,
    raise_for_event,
)


class ScriptedTrigger(FleetPollTrigger):
    """Answers its polls from a script: ``None`` (keep waiting), an event, or an exception."""

    serialized_fields = ("script", "label")

    def __init__(self, *, script: list[Any], label: str = "scripted", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.script = list(script)
        self.label = label
        self.polls = 0

    def poll_once(self) -> dict[str, Any] | None:
        self.polls += 1
        step = self.script.pop(0) if self.script else None
        if isinstance(step, BaseException):
            raise step
        return step


async def _events(trigger: FleetPollTrigger) -> list[TriggerEvent]:
    return [event async for event in trigger.run()]


DONE = {"status": SUCCESS, "message": "done"}


class TestDeferTimeout:
    def test_polls_plus_margin(self):
        assert defer_timeout(30, 10) == timedelta(seconds=300 + DEFER_TIMEOUT_MARGIN)
        assert defer_timeout(0, 5) == timedelta(seconds=DEFER_TIMEOUT_MARGIN)


class TestRaiseForEvent:
    def test_success_is_returned(self):
        assert raise_for_event(DONE, "Waiting") is DONE

    @pytest.mark.parametrize("status", [FAILED, TIMEOUT, ERROR])
    def test_anything_else_raises_with_the_message(self, status):
        with pytest.raises(FleetError, match=f"^Waiting for running {status}: i-1 is terminated$"):
            raise_for_event({"status": status, "message": "i-1 is terminated"}, "Waiting for running")

    def test_no_event(self):
        with pytest.raises(FleetError, match="Waiting: the trigger returned no event"):
            raise_for_event(None, "Waiting")


class TestFleetPollTrigger:
    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"waiter_max_attempts": 0}, "waiter_max_attempts must be at least 1, got 0"),
            ({"waiter_delay": -1}, "waiter_delay must not be negative, got -1"),
        ],
    )
    def test_rejects_an_unbounded_or_negative_wait(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            ScriptedTrigger(script=[], **kwargs)

    def test_serialize_has_shared_and_own_arguments_and_rebuilds(self):
        trigger = ScriptedTrigger(
            script=[None, DONE],
            label="x",
            waiter_delay=5,
            waiter_max_attempts=7,
            aws_conn_id="fleet",
            region_name="eu-west-1",
            verify=False,
            botocore_config={"read_timeout": 3},
        )
        classpath, kwargs = trigger.serialize()
        assert classpath == f"{__name__}.ScriptedTrigger"
        assert kwargs == {
            "script": [None, DONE],
            "label": "x",
            "waiter_delay": 5,
            "waiter_max_attempts": 7,
            "aws_conn_id": "fleet",
            "region_name": "eu-west-1",
            "verify": False,
            "botocore_config": {"read_timeout": 3},
        }
        module, name = classpath.rsplit(".", 1)
        rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
        assert rebuilt.serialize() == trigger.serialize()

    def test_connection_args(self):
        trigger = ScriptedTrigger(script=[], aws_conn_id="c", region_name="r", verify="ca.pem")
        assert trigger.connection_args == {
            "aws_conn_id": "c",
            "region_name": "r",
            "verify": "ca.pem",
            "botocore_config": None,
        }

    def test_guarded_poll_turns_aws_and_fleet_errors_into_error_events(self):
        client_error = ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "denied"}}, "X")
        trigger = ScriptedTrigger(
            script=[
                FleetError("i-9 not found"),
                client_error,
                EndpointConnectionError(endpoint_url="https://ec2"),
            ]
        )
        assert trigger.poll_guarded() == {"status": ERROR, "message": "i-9 not found"}
        assert trigger.poll_guarded() == {"status": ERROR, "message": "UnauthorizedOperation: denied"}
        assert trigger.poll_guarded() == {
            "status": ERROR,
            "message": 'Could not connect to the endpoint URL: "https://ec2"',
        }

    def test_guarded_poll_lets_programming_errors_through(self):
        trigger = ScriptedTrigger(script=[KeyError("bug")])
        with pytest.raises(KeyError):
            trigger.poll_guarded()


class TestRunSync:
    def test_polls_until_an_event_sleeping_between_polls(self):
        sleeps: list[float] = []
        trigger = ScriptedTrigger(script=[None, None, DONE], waiter_delay=12, waiter_max_attempts=5)
        assert trigger.run_sync(sleep=sleeps.append) == DONE
        assert trigger.polls == 3
        assert sleeps == [12, 12]

    def test_gives_up_after_max_attempts_without_a_last_sleep(self):
        sleeps: list[float] = []
        trigger = ScriptedTrigger(script=[], waiter_delay=3, waiter_max_attempts=4)
        assert trigger.run_sync(sleep=sleeps.append) == {
            "status": TIMEOUT,
            "message": "gave up after 4 polls every 3 s",
        }
        assert trigger.polls == 4
        assert sleeps == [3, 3, 3]

    def test_an_error_ends_the_wait_at_once(self):
        trigger = ScriptedTrigger(script=[None, FleetError("gone")], waiter_delay=0, waiter_max_attempts=9)
        assert trigger.run_sync(sleep=lambda _: None) == {"status": ERROR, "message": "gone"}
        assert trigger.polls == 2


class TestRun:
    async def test_yields_one_event_when_a_poll_answers(self):
        trigger = ScriptedTrigger(script=[None, {"status": FAILED, "message": "no"}], waiter_delay=0)
        events = await _events(trigger)
        assert [event.payload for event in events] == [{"status": FAILED, "message": "no"}]
        assert trigger.polls == 2

    async def test_times_out_after_max_attempts(self):
        trigger = ScriptedTrigger(script=[], waiter_delay=0, waiter_max_attempts=3)
        events = await _events(trigger)
        assert [event.payload for event in events] == [
            {"status": TIMEOUT, "message": "gave up after 3 polls every 0 s"}
        ]
        assert trigger.polls == 3

    async def test_sleeps_between_polls_only(self, monkeypatch):
        slept: list[float] = []
        real_sleep = asyncio.sleep

        async def fake_sleep(delay: float) -> None:
            slept.append(delay)
            await real_sleep(0)

        monkeypatch.setattr("operators.fleet_wait.asyncio.sleep", fake_sleep)
        trigger = ScriptedTrigger(script=[None, None, None], waiter_delay=30, waiter_max_attempts=3)
        events = await _events(trigger)
        assert events[0].payload["status"] == TIMEOUT
        assert slept == [30, 30]

    async def test_errors_become_an_error_event(self):
        trigger = ScriptedTrigger(script=[FleetError("EC2 instance(s) i-7 not found")], waiter_delay=0)
        events = await _events(trigger)
        assert [event.payload for event in events] == [
            {"status": ERROR, "message": "EC2 instance(s) i-7 not found"}
        ]
