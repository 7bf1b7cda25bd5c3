"""The daily DAG's "still running ``alert_after`` after it was queued" alert, safe to Clear.

Not ``DeadlineReference.DAGRUN_QUEUED_AT``: in Airflow 3.3 every Clear of a run whose such
deadline is still pending fails with HTTP 500 (``_recalculate_dagrun_queued_at_deadlines`` calls
``timedelta(seconds=...)`` on the serialized interval, a dict: apache/airflow#70368, fix in
apache/airflow#70370). :class:`FleetRunQueuedAtDeadline` is the same time under another name,
which that recalculation skips; ``fleet_deadline_plugin.py`` registers it. Go back once the
pinned Airflow has the fix (``tests/dags/test_fleet_deadline_clear.py`` fails then).

:func:`fleet_deadline_alert` keeps what the recalculation did right (after a Clear, alert
``alert_after`` past the *new* ``queued_at``), and alerts only for a run that has not ended:
Airflow prunes deadlines only of a run that succeeded.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseDeadlineReference
from airflow.sdk.module_loading import import_string

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# A DAG run's states that mean it has ended (airflow.utils.state.DagRunState's finished states).
ENDED_STATES = frozenset({"success", "failed"})
# How long the triggerer may take to answer the run's current state before the alert goes by the
# state the scheduler saw when the deadline was missed.
STATE_LOOKUP_TIMEOUT = 30.0


class FleetRunQueuedAtDeadline(BaseDeadlineReference):
    """The run's ``queued_at``, evaluated by the scheduler or the API server (never at parse
    time: hence the imports of Airflow's core inside :meth:`_evaluate_with`)."""

    # SerializedCustomReference hands _evaluate_with only these of the run's identifiers.
    required_kwargs = frozenset({"dag_id", "run_id"})

    def _evaluate_with(self, *, session: Session, dag_id: str, run_id: str, **kwargs: Any) -> datetime | None:
        from airflow.models.dagrun import DagRun
        from sqlalchemy import select

        queued_at = session.scalar(
            select(DagRun.queued_at).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        )
        if queued_at is None:
            # As Airflow does for DAGRUN_QUEUED_AT: a run that is not queued gets no deadline.
            log.warning("no deadline for %s run %s: it has no queued_at", dag_id, run_id)
        return queued_at


async def fleet_deadline_alert(
    *,
    notifier: str,
    alert_after: float,
    notifier_kwargs: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
) -> str:
    """The deadline's callback, in the triggerer: call the notifier only for a run still going.

    :param notifier, notifier_kwargs: the notifier class's import path and its arguments
    :param alert_after: the deadline's interval, seconds
    :param context: Airflow's: ``dag_run`` as the REST API showed it when the deadline was missed
    :returns: what was done, kept by Airflow as the callback's output
    """
    context = dict(context or {})
    run = context.get("dag_run") or {}  # a DAGRunResponse dumped as JSON: the run id is dag_run_id
    label = f"{run.get('dag_id')} run {run.get('dag_run_id')}"
    if run.get("state") in ENDED_STATES:
        return _silent(label, f"it had ended {run['state']} at {run.get('end_date')}")
    # A Clear re-queues the run; Airflow would move a pending deadline to the new queued_at, but
    # the reference above is not recalculated (that is the buggy code), so wait the rest here.
    wait = _seconds_until(run.get("queued_at"), alert_after)
    if wait > 0:
        log.info(
            "FLEET deadline: %s was queued again at %s (a Clear); waiting %.0f s more, to alert "
            "%s after that",
            label,
            run.get("queued_at"),
            wait,
            timedelta(seconds=alert_after),
        )
        await asyncio.sleep(wait)
    state = await _current_state(run) or run.get("state")
    if state in ENDED_STATES:
        return _silent(label, f"it has ended {state} since")
    log.warning(
        "FLEET deadline: %s still %s %s after it was queued: calling %s",
        label,
        state,
        timedelta(seconds=alert_after),
        notifier,
    )
    notifier_class = import_string(notifier)
    # What Airflow's CallbackTrigger does with a notifier class as the callback: BaseNotifier
    # takes the context as an argument and is awaitable (its async_notify).
    await notifier_class(**(notifier_kwargs or {}), context=context)
    return f"alerted: {label} still {state}"


def _silent(label: str, why: str) -> str:
    log.info("FLEET deadline: no alert for %s: %s", label, why)
    return f"no alert: {why}"


def _seconds_until(queued_at: Any, alert_after: float) -> float:
    """Seconds from now until ``alert_after`` after ``queued_at`` (negative once past; 0 if unknown)."""
    if not queued_at:
        return 0.0
    moment = queued_at if isinstance(queued_at, datetime) else datetime.fromisoformat(str(queued_at))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment + timedelta(seconds=alert_after) - datetime.now(UTC)).total_seconds()


async def _current_state(run: dict[str, Any]) -> str | None:
    """The run's state now, asked through the triggerer as the standard provider's triggers do.

    ``None`` when it cannot be read (say, outside a triggerer): the alert then goes by the state
    at the miss, which is the best it has.
    """
    if not (run.get("dag_id") and run.get("dag_run_id")):
        return None
    try:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
        from asgiref.sync import sync_to_async

        lookup = sync_to_async(RuntimeTaskInstance.get_dagrun_state)
        state = await asyncio.wait_for(
            lookup(dag_id=run["dag_id"], run_id=run["dag_run_id"]), timeout=STATE_LOOKUP_TIMEOUT
        )
        # A DagRunState (a str enum) from the triggerer: its value, as in the context's JSON.
        return getattr(state, "value", state)
    except Exception as error:
        log.warning(
            "FLEET deadline: cannot read the current state of %s run %s (%s: %s); going by the "
            "state when the deadline was missed",
            run.get("dag_id"),
            run.get("dag_run_id"),
            type(error).__name__,
            error,
        )
        return None
