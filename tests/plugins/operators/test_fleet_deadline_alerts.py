"""fleet_deadline_alert: the deadline's callback alerts only for a run that has not ended.

It is called as the triggerer calls it (keyword arguments plus the ``context`` of
``Deadline.handle_miss``); the run's current state comes from
``RuntimeTaskInstance.get_dagrun_state``, which the triggerer answers and these tests replace.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk import DagRunState
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
from operators.fleet_deadline_alerts import fleet_deadline_alert

NOTIFIER = "operators.fleet_notifiers.FleetLogNotifier"
RUN_ID = "scheduled__2026-11-23T00:00:00+00:00"
MESSAGE = "fleet_daily still running 0:15:00 after it was queued"


def miss(state: str, *, queued_ago: float = 960.0, end_date: str | None = None) -> dict:
    """The context of a deadline missed now, for a run queued ``queued_ago`` seconds ago.

    ``dag_run`` is what ``Deadline.handle_miss`` puts there: the REST API's ``DAGRunResponse``
    as JSON (these are the fields the callback reads).
    """
    now = datetime.now(UTC)
    return {
        "dag_run": {
            "dag_id": "fleet_daily",
            "dag_run_id": RUN_ID,
            "state": state,
            "queued_at": (now - timedelta(seconds=queued_ago)).isoformat(),
            "end_date": end_date,
        },
        "deadline": {"id": "0193", "deadline_time": now - timedelta(seconds=60)},
    }


async def alert(context: dict, alert_after: float = 900.0, message: str = MESSAGE) -> str:
    return await fleet_deadline_alert(
        notifier=NOTIFIER, notifier_kwargs={"message": message}, alert_after=alert_after, context=context
    )


@pytest.fixture
def current_state(monkeypatch):
    """What the triggerer answers for the run's state now (set ``.value``); the lookups made.

    The triggerer answers with a ``DagRunState``, a str enum.
    """

    class Answer:
        value = "running"
        lookups: list[tuple[str, str, float]] = []

    def get_dagrun_state(dag_id: str, run_id: str) -> str:
        Answer.lookups.append((dag_id, run_id, time.monotonic()))
        if isinstance(Answer.value, Exception):
            raise Answer.value
        return DagRunState(Answer.value)

    Answer.lookups = []
    monkeypatch.setattr(RuntimeTaskInstance, "get_dagrun_state", staticmethod(get_dagrun_state))
    return Answer


@pytest.fixture
def reasons(caplog):
    caplog.set_level(logging.INFO, logger="operators.fleet_deadline_alerts")
    return caplog


def alerts(task_log) -> list[str]:
    return [str(e["event"]) for e in task_log if e["log_level"] == "error"]


@pytest.mark.parametrize("state", ["failed", "success"])
async def test_a_run_that_had_ended_when_the_deadline_was_missed_is_not_alerted(
    state, current_state, task_log, reasons
):
    result = await alert(miss(state, end_date="2026-11-23T00:02:00+00:00"))

    assert alerts(task_log) == []
    assert result == f"no alert: it had ended {state} at 2026-11-23T00:02:00+00:00"
    assert f"no alert for fleet_daily run {RUN_ID}: it had ended {state}" in reasons.text


async def test_a_run_still_running_past_alert_after_calls_the_notifier_with_the_context(
    current_state, task_log, reasons
):
    result = await alert(miss("running"), message="{{ dag_run.dag_run_id }} still {{ dag_run.state }}")

    assert alerts(task_log) == [f"FLEET ALERT: {RUN_ID} still running"]
    assert result == f"alerted: fleet_daily run {RUN_ID} still running"
    assert [lookup[:2] for lookup in current_state.lookups] == [("fleet_daily", RUN_ID)]
    assert f"fleet_daily run {RUN_ID} still running 0:15:00 after it was queued: calling {NOTIFIER}" in (
        reasons.text
    )


async def test_a_run_still_queued_past_alert_after_is_alerted_too(current_state, task_log):
    current_state.value = "queued"

    await alert(miss("queued"))

    assert alerts(task_log) == [f"FLEET ALERT: {MESSAGE}"]


@pytest.mark.parametrize("state", ["failed", "success"])
async def test_a_run_that_ended_after_the_miss_but_before_the_callback_is_not_alerted(
    state, current_state, task_log, reasons
):
    current_state.value = state

    result = await alert(miss("running"))

    assert alerts(task_log) == []
    assert result == f"no alert: it has ended {state} since"


async def test_a_cleared_run_is_alerted_alert_after_after_it_was_queued_again(
    current_state, task_log, reasons
):
    # Queued again (a Clear) 1 s less than alert_after ago; the deadline kept the first queue.
    began = time.monotonic()

    await alert(miss("running", queued_ago=29.0), alert_after=30.0)

    (lookup,) = current_state.lookups
    assert lookup[2] - began >= 0.9, "the state was read before alert_after had passed"
    assert alerts(task_log) == [f"FLEET ALERT: {MESSAGE}"]
    assert "was queued again at" in reasons.text and "(a Clear); waiting 1 s more" in reasons.text


async def test_a_cleared_run_that_succeeds_within_alert_after_of_its_new_queue_is_not_alerted(
    current_state, task_log
):
    current_state.value = "success"  # what the run is once the wait is over

    result = await alert(miss("running", queued_ago=29.7), alert_after=30.0)

    assert alerts(task_log) == []
    assert result == "no alert: it has ended success since"


async def test_without_the_current_state_it_goes_by_the_state_at_the_miss(current_state, task_log, reasons):
    current_state.value = RuntimeError("no supervisor to ask")

    await alert(miss("running"))

    assert alerts(task_log) == [f"FLEET ALERT: {MESSAGE}"]
    assert "cannot read the current state of fleet_daily run" in reasons.text
    assert "RuntimeError: no supervisor to ask" in reasons.text
