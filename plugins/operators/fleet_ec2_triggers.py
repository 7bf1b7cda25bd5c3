"""Triggers that wait on the state of a list of EC2 instances."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook

from instance_agent.protocol import STATE_RUNNING, report_for
from operators import fleet_ec2 as ec2
from operators.fleet_wait import FAILED, SUCCESS, FleetPollTrigger, utcnow


class FleetInstanceStateTrigger(FleetPollTrigger):
    """Wait until every instance of a list is in ``target_state``: one DescribeInstances a poll.

    Each poll logs every outstanding instance's agent progress and heartbeat age.

    :param target_state: the EC2 state every instance must reach, or
        :data:`~operators.fleet_ec2.SETTLED` (no longer in a transition)
    :param failure_states: states that fail the wait at once; default from the target
    :param require_status_ok: also wait for EC2 status checks (instance and system) to be ``ok``
    :param heartbeat_grace: seconds of agent silence tolerated (only from an agent that says it
        is running ``run_date``); ``None`` disables the check
    """

    hook_class = EC2Hook
    serialized_fields = (
        "instance_ids",
        "target_state",
        "failure_states",
        "require_status_ok",
        "heartbeat_grace",
        "run_date",
    )

    def __init__(
        self,
        *,
        instance_ids: Sequence[str],
        target_state: str,
        failure_states: Sequence[str] | None = None,
        require_status_ok: bool = False,
        heartbeat_grace: float | None = None,
        run_date: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.instance_ids = list(instance_ids)
        self.target_state = target_state
        self.failure_states = (
            list(failure_states) if failure_states is not None else ec2.default_failure_states(target_state)
        )
        if target_state in self.failure_states:
            raise ValueError(f"target_state {target_state!r} is also listed in failure_states")
        if target_state == ec2.SETTLED and require_status_ok:
            # Status checks exist only for running instances; a settled one may be stopped.
            raise ValueError("require_status_ok needs target_state 'running', not 'settled'")
        self.require_status_ok = require_status_ok
        self.heartbeat_grace = heartbeat_grace
        self.run_date = run_date
        # Swappable for tests; not serialized.
        self.clock: Callable[[], datetime] = utcnow
        self._outstanding: list[str] = list(self.instance_ids)

    def timeout_message(self) -> str:
        return (
            f"instances did not reach {self.target_state!r} within {self.waiter_max_attempts} polls "
            f"every {self.waiter_delay} s; still not there: {', '.join(self._outstanding)}"
        )

    def poll_once(self) -> dict[str, Any] | None:
        views = ec2.describe_instances(self.hook.conn, self.instance_ids)
        # Every final event carries each instance's state and tags: a failure's, for the force-stop
        # and the report, as much as a success's.
        end = {"instances": {view.instance_id: view.to_xcom() for view in views.values()}}
        failed = [view for view in views.values() if view.state in self.failure_states]
        if failed:
            return {
                "status": FAILED,
                "message": "; ".join(
                    f"{view.instance_id} is {view.state} while waiting for {self.target_state}"
                    + (f" ({view.state_reason})" if view.state_reason else "")
                    for view in failed
                ),
                **end,
            }
        outstanding = [view for view in views.values() if not self._reached(view)]
        silent = self._check_heartbeats(outstanding)
        if silent:
            return {"status": FAILED, "message": silent, **end}
        if not outstanding and self.require_status_ok:
            outstanding = self._status_not_ok(views)
        self._outstanding = [view.instance_id for view in outstanding]
        if outstanding:
            self.log.info(
                "Waiting for %s: %d of %d outstanding", self.target_state, len(outstanding), len(views)
            )
            for view in outstanding:
                self.log.info("  %s", self._describe_progress(view))
            return None
        return {"status": SUCCESS, "message": f"{len(views)} instance(s) {self.target_state}", **end}

    def _reached(self, view: ec2.InstanceView) -> bool:
        if self.target_state == ec2.SETTLED:
            return view.state not in ec2.TRANSITIONAL_STATES
        return view.state == self.target_state

    def _describe_progress(self, view: ec2.InstanceView) -> str:
        text = f"{view.instance_id}: {view.state}"
        report = report_for(view.report, self.run_date)
        if report is not None:
            age = report.heartbeat_age(self.clock())
            text += f", agent {report.state or '?'} {report.progress or '?'} for {report.run_date}"
            text += f", heartbeat {age:.0f} s ago" if age is not None else ", no heartbeat yet"
        return text

    def _check_heartbeats(self, outstanding: Sequence[ec2.InstanceView]) -> str | None:
        if self.heartbeat_grace is None:
            return None
        now = self.clock()
        silent = []
        for view in outstanding:
            report = report_for(view.report, self.run_date)
            # Only an agent that says it is running owes us heartbeats; a finished agent stops them.
            if view.state != "running" or report is None or report.state != STATE_RUNNING:
                continue
            age = report.heartbeat_age(now)
            if age is not None and age > self.heartbeat_grace:
                silent.append(f"agent on {view.instance_id} silent for {age:.0f} s")
        return "; ".join(silent) or None

    def _status_not_ok(self, views: dict[str, ec2.InstanceView]) -> list[ec2.InstanceView]:
        ok = ec2.status_ok(self.hook.conn, list(views))
        return [view for view in views.values() if view.instance_id not in ok]
