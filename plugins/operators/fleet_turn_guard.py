"""A step of a cleared run makes sure the fleet is its run's again before it acts on a VM.

``wait_turn`` gives the fleet to its run until the run ends (:mod:`operators.fleet_turn`). A
person's Clear re-opens an ended run, and Airflow re-runs the cleared tasks; ``wait_turn`` among
them only when the Clear included it (it is a setup task: clearing a role's step with or without
its downstream includes it; a "clear failed" never does, since it succeeded, nor does a Clear of
the signer's pair alone). Meanwhile another run may have taken its turn and be on the same VMs.

So a step that acts on a VM (a role's ``start``, ``run_agent`` and ``wait_stopped`` with its
force-stop, the signer's start and stop) takes :class:`FleetTurnGuard`: in a run that has been
cleared (``dag_run.clear_number > 0``) it first asks
:func:`~operators.fleet_turn.decide_rejoin`, and waits (deferred, polling like ``wait_turn``)
while another run holds the fleet or checks its turn. A run never cleared pays nothing: no call.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from operators.fleet_aws import FleetError
from operators.fleet_turn import SdkTurnReader, TurnReader, decide_rejoin, read_turn
from operators.fleet_turn_triggers import REJOIN, REJOIN_OUTCOME, FleetTurnTrigger, late_message, utcnow
from operators.fleet_wait import DEFER_TIMEOUT_MARGIN, FleetDeferring

if TYPE_CHECKING:
    from airflow.sdk import Context

# As long as wait_turn waits: a daily fleet's stuck run ahead is a person's to look at by then.
TURN_GUARD_TIMEOUT = timedelta(days=1)
DEFAULT_TURN_POLL_SECONDS = 30.0


class FleetTurnGuard(FleetDeferring):
    """Mixin for the fleet's operators: :meth:`hold_turn` before acting, in a cleared run.

    Put it first among the bases; the operator calls ``self.hold_turn(context)`` at the top of
    ``execute`` (which :meth:`resume_after_turn` calls again after a deferred wait). Not
    ``deferrable``, the task waits in the worker (:class:`~operators.fleet_wait.FleetDeferring`).

    :param turn_task_id: the DAG's turn-taking task (``wait_turn``); ``None``: no guard
    :param turn_poll_interval: seconds between two looks while waiting
    """

    def __init__(
        self,
        *,
        turn_task_id: str | None = None,
        turn_poll_interval: float = DEFAULT_TURN_POLL_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.turn_task_id = turn_task_id
        self.turn_poll_interval = max(float(turn_poll_interval), 1.0)
        # Swappable for tests; the Task SDK's calls otherwise.
        self.turn_reader: TurnReader = SdkTurnReader()
        self.turn_clock = utcnow
        # Kept across deferrals, so that waiting again does not push the bound back.
        self._turn_deadline: str | None = None

    def hold_turn(self, context: Context) -> None:
        """Return when this run may act on the fleet; defer (or block) until then."""
        if not self.turn_task_id or not getattr(context.get("dag_run"), "clear_number", 0):
            return
        ti = context["ti"]
        if self._turn_deadline is None:
            self._turn_deadline = (self.turn_clock() + TURN_GUARD_TIMEOUT).isoformat()
        deadline = self._turn_deadline
        while True:
            view = read_turn(self.turn_reader, dag_id=ti.dag_id, task_id=self.turn_task_id, run_id=ti.run_id)
            turn = decide_rejoin(view)
            if turn.go:
                self.log.info(  # type: ignore[attr-defined]
                    "Run %s was cleared; the fleet is still its own: no other run holds it", ti.run_id
                )
                return
            self.log.info(  # type: ignore[attr-defined]
                "Run %s was cleared after it took its turn on the fleet, and another run may be on it"
                " now; waiting: %s",
                ti.run_id,
                turn.describe(),
            )
            remaining = (datetime.fromisoformat(deadline) - self.turn_clock()).total_seconds()
            if remaining <= 0:
                raise FleetError(late_message(ti.run_id, deadline, turn.describe()))
            trigger = FleetTurnTrigger.until(
                ti,
                task_id=self.turn_task_id,
                deadline=deadline,
                remaining=remaining,
                poll_interval=self.turn_poll_interval,
                rule=REJOIN,
                reader=self.turn_reader,
                clock=self.turn_clock,
            )
            event = self.defer_or_wait(
                trigger,
                method_name="resume_after_turn",
                timeout=timedelta(seconds=remaining + DEFER_TIMEOUT_MARGIN),
            )
            self._check_turn_event(event)

    def resume_after_turn(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Re-entry after the deferred wait: look again in the worker, then the step itself."""
        self._check_turn_event(event)
        return self.execute(context)  # type: ignore[attr-defined]

    def _check_turn_event(self, event: dict[str, Any] | None) -> None:
        event = REJOIN_OUTCOME.check(event, "waiting for the run's turn on the fleet")
        self._turn_deadline = event["deadline"]
