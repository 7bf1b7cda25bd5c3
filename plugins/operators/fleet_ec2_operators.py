"""Start and stop a list of EC2 instances: one read, one batched call, one bounded wait.

Both are idempotent: an instance already in the wanted state counts as done, one in a transition
is waited out first, and one in no state of :class:`~operators.fleet_ec2.ActionStates` (say
terminated) fails the task naming it, without retries: a retry would find it the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from botocore.exceptions import ClientError

from operators import fleet_ec2 as ec2
from operators.fleet_aws import (
    FleetAwsTask,
    FleetError,
    FleetStateFailure,
    error_code,
    error_message,
    normalize_instance_ids,
)
from operators.fleet_done_checks import skip_if_done, skip_unless_work
from operators.fleet_ec2_triggers import FleetInstanceStateTrigger
from operators.fleet_turn_sensors import FleetTurnGuard
from operators.fleet_wait import raise_for_event

if TYPE_CHECKING:
    from airflow.sdk import Context


@dataclass
class _Round:
    """What one read-then-act round did, or why it has to be repeated."""

    targets: list[str] = field(default_factory=list)
    acted: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    settle: list[str] = field(default_factory=list)  # in a transition that must end before we act
    # Set when EC2 refused the call with IncorrectInstanceState (a race with another actor).
    race: str | None = None
    views: dict[str, ec2.InstanceView] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return not self.settle and self.race is None


def _ids_with_states(views: dict[str, ec2.InstanceView], ids: Sequence[str]) -> str:
    return ", ".join(f"{iid} ({views[iid].state})" for iid in ids if iid in views)


class _FleetInstanceActionOperator(FleetTurnGuard, FleetAwsTask, AwsBaseOperator[EC2Hook]):
    """Shared read → act → wait machinery of the start and stop operators.

    :param instance_ids: the instances: a list, or a comma-separated string (templated)
    :param wait_for_completion: wait until every instance is in ``target_state``
    :param waiter_delay: seconds between two polls of a wait
    :param waiter_max_attempts: polls before a wait gives up
    """

    aws_hook_class = EC2Hook
    ui_color = "#eeaa11"
    ui_fgcolor = "#ffffff"

    action: str
    target_state: str
    states: ec2.ActionStates
    # Whether the final wait also waits for the EC2 status checks (only a start may).
    require_status_ok = False
    api_call: str
    already_label: str
    # XCom keys under which the acted-on and the already-done instances are pushed.
    acted_key: str
    already_key: str

    # How many read → act rounds before giving up on instances whose state keeps changing under
    # us (each IncorrectInstanceState race, and each wait for a transition, costs one round).
    max_state_rounds = 4

    def __init__(
        self,
        *,
        instance_ids: Sequence[str] | str | None = None,
        wait_for_completion: bool = True,
        waiter_delay: int = 15,
        waiter_max_attempts: int = 40,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.instance_ids = instance_ids
        self.wait_for_completion = wait_for_completion
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts

    def _call(self, instance_ids: list[str]) -> None:
        """The one batched EC2 call (StartInstances or StopInstances)."""
        raise NotImplementedError

    def _watched_ids(self) -> list[str]:
        return normalize_instance_ids(self.instance_ids, "instance_ids")

    def _check_needed(self, context: Context, views: dict[str, ec2.InstanceView]) -> None:
        """Before acting: raise ``AirflowSkipException`` when the action is not needed."""

    def execute(self, context: Context) -> list[str]:
        self.hold_turn(context)
        return self._rounds(context, first_round=1)

    def resume_after_settle(
        self, context: Context, event: dict[str, Any] | None = None, round_no: int = 1
    ) -> list[str]:
        """Re-entry after a deferred wait for transitions: read again and act."""
        raise_for_event(event, f"Waiting for instances to settle before {self.action}")
        return self._rounds(context, first_round=round_no + 1)

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, instance_ids: list[str] | None = None
    ) -> list[str]:
        raise_for_event(event, f"Waiting for {self.target_state}")
        ids = instance_ids or list((event or {}).get("instances", {}))
        self.log.info("%d instance(s) %s: %s", len(ids), self.target_state, ", ".join(ids))
        return ids

    def _rounds(self, context: Context, first_round: int) -> list[str]:
        ids = self._watched_ids()
        # Even a resumed task gets one more read before it may give up.
        first_round = min(first_round, self.max_state_rounds)
        for round_no in range(first_round, self.max_state_rounds + 1):
            # One DescribeInstances for every instance, whatever their number (batched by 1000).
            views = ec2.describe_instances(self.hook.conn, ids)
            self._check_needed(context, views)
            outcome = self._act(views)
            if outcome.done:
                return self._complete(context, outcome)
            if round_no == self.max_state_rounds:
                break
            if outcome.race:
                self.log.warning(
                    "%s raced with another change (%s); reading the states again (round %d of %d)",
                    self.action.capitalize(),
                    outcome.race,
                    round_no,
                    self.max_state_rounds,
                )
                continue
            self.log.info(
                "Waiting for %s to finish their transition before %s",
                _ids_with_states(views, outcome.settle),
                self.action,
            )
            event = self.defer_or_wait(
                self._trigger(outcome.settle, ec2.SETTLED),
                method_name="resume_after_settle",
                kwargs={"round_no": round_no},
            )
            raise_for_event(event, f"Waiting for instances to settle before {self.action}")
        stuck = outcome.settle or [i for i in ids if outcome.views[i].state not in self.states.done]
        raise FleetError(
            f"Could not {self.action} {_ids_with_states(outcome.views, stuck)}: their state kept changing "
            f"through {self.max_state_rounds} attempts"
            + (f"; last error: {outcome.race}" if outcome.race else "")
        )

    def _act(self, views: dict[str, ec2.InstanceView]) -> _Round:
        """Classify the instances, then make the one batched call for those that need it."""
        ids = self._watched_ids()
        states = self.states
        gone = [i for i in ids if views[i].state not in states.done | states.settle | states.act]
        if gone:
            raise FleetStateFailure(
                f"Cannot {self.action} " + "; ".join(f"{i}: it is {views[i].described_state}" for i in gone)
            )
        outcome = _Round(
            targets=ids,
            already=[i for i in ids if views[i].state in states.done],
            settle=[i for i in ids if views[i].state in states.settle],
            views=views,
        )
        if outcome.settle:
            # Act only once everything has settled, so that the whole list goes in one call.
            return outcome
        to_act = [i for i in ids if views[i].state in states.act]
        if to_act:
            try:
                self._call(to_act)
            except ClientError as error:
                if error_code(error) == ec2.INCORRECT_STATE:
                    outcome.race = f"{ec2.INCORRECT_STATE}: {error_message(error)}"
                    return outcome
                raise FleetError(
                    f"{self.action.capitalize()} of {', '.join(to_act)} failed: "
                    f"{error_code(error)}: {error_message(error)}"
                ) from error
        outcome.acted = to_act
        return outcome

    def _complete(self, context: Context, outcome: _Round) -> list[str]:
        if outcome.acted:
            self.log.info(
                "%s called for %d instance(s): %s",
                self.api_call,
                len(outcome.acted),
                ", ".join(outcome.acted),
            )
        if outcome.already:
            self.log.info(
                "%s, no call needed: %s", self.already_label, _ids_with_states(outcome.views, outcome.already)
            )
        ti = context["ti"]
        ti.xcom_push(key=self.acted_key, value=outcome.acted)
        ti.xcom_push(key=self.already_key, value=outcome.already)
        if not self.wait_for_completion:
            return outcome.targets
        if not self.require_status_ok and all(
            outcome.views[i].state == self.target_state for i in outcome.targets
        ):
            # Nothing to wait for: a re-run on a fleet already there finishes without a deferral.
            self.log.info("%d instance(s) already %s", len(outcome.targets), self.target_state)
            return outcome.targets
        trigger = self._trigger(outcome.targets, self.target_state, require_status_ok=self.require_status_ok)
        kwargs = {"instance_ids": outcome.targets}
        event = self.defer_or_wait(trigger, method_name="execute_complete", kwargs=kwargs)
        return self.execute_complete(context, event, **kwargs)

    def _trigger(
        self, instance_ids: list[str], target_state: str, **kwargs: Any
    ) -> FleetInstanceStateTrigger:
        return FleetInstanceStateTrigger(
            instance_ids=instance_ids,
            target_state=target_state,
            waiter_delay=self.waiter_delay,
            waiter_max_attempts=self.waiter_max_attempts,
            hook=self.hook,
            **self.connection_args,
            **kwargs,
        )


class FleetStartInstancesOperator(_FleetInstanceActionOperator):
    """Start a list of EC2 instances, or the first startable of an ordered list of candidates.

    Stopped instances are started in one StartInstances call, stopping ones waited out first;
    then the operator waits for ``running``. With ``candidates`` (alternatives for one slot), one
    already up is used, else they are started one at a time in order, a capacity error moving on
    to the next. Returns the slot's instance IDs; pushes XCom ``started`` and ``already_running``.

    :param candidates: ordered alternatives for one slot, instead of ``instance_ids`` (templated)
    :param skip_when_done_for: a run date (templated): skip when an instance's agent completed it
        (:mod:`operators.fleet_done_checks`)
    :param needed_by: ``{role: instance ids}``: with ``skip_when_done_for``, skip unless one of
        these roles has work for that date (the signer)
    :param require_status_ok: also wait for the EC2 status checks to pass
    """

    template_fields: Sequence[str] = aws_template_fields("instance_ids", "candidates", "skip_when_done_for")

    action = "start"
    target_state = "running"
    states = ec2.START_STATES
    api_call = "StartInstances"
    already_label = "Already running or starting"
    acted_key = "started"
    already_key = "already_running"

    def __init__(
        self,
        *,
        instance_ids: Sequence[str] | str | None = None,
        candidates: Sequence[str] | str | None = None,
        require_status_ok: bool = False,
        skip_when_done_for: str | None = None,
        needed_by: Mapping[str, Sequence[str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(instance_ids=instance_ids, **kwargs)
        self.candidates = candidates
        self.require_status_ok = require_status_ok
        self.skip_when_done_for = skip_when_done_for
        self.needed_by = dict(needed_by) if needed_by else None

    def execute(self, context: Context) -> list[str]:
        # Checked here, not in __init__: both fields are templates until the task runs.
        if (self.instance_ids is None) == (self.candidates is None):
            raise ValueError(f"{self.task_id}: give exactly one of instance_ids and candidates")
        return super().execute(context)

    def _watched_ids(self) -> list[str]:
        if self.candidates is not None:
            return normalize_instance_ids(self.candidates, "candidates")
        return super()._watched_ids()

    def _check_needed(self, context: Context, views: dict[str, ec2.InstanceView]) -> None:
        if self.needed_by is not None:
            skip_unless_work(context, self.hook.conn, self.needed_by, self.skip_when_done_for, "starting it")
        else:
            skip_if_done(context, views, self.skip_when_done_for, "boot")

    def _call(self, instance_ids: list[str]) -> None:
        self.hook.conn.start_instances(InstanceIds=instance_ids)

    def _act(self, views: dict[str, ec2.InstanceView]) -> _Round:
        if self.candidates is None:
            return super()._act(views)
        candidates = self._watched_ids()
        running = [c for c in candidates if views[c].state in self.states.done]
        if running:
            self.log.info("Candidate %s is already %s: using it", running[0], views[running[0]].state)
            return _Round(targets=[running[0]], already=[running[0]], views=views)
        settle = [c for c in candidates if views[c].state in self.states.settle]
        if settle:
            # Wait before trying any, so that the candidates are tried in the order given.
            return _Round(settle=settle, views=views)
        errors: dict[str, str] = {}
        for candidate in candidates:
            view = views[candidate]
            if view.state not in self.states.act:
                errors[candidate] = view.described_state
                continue
            try:
                self._call([candidate])
            except ClientError as error:
                code = error_code(error)
                if code == ec2.INCORRECT_STATE:
                    return _Round(race=f"{candidate}: {code}: {error_message(error)}", views=views)
                if code not in ec2.CAPACITY_ERRORS:
                    raise FleetError(
                        f"Start of candidate {candidate} failed: {code}: {error_message(error)}"
                    ) from error
                errors[candidate] = f"{code}: {error_message(error)}"
                self.log.warning("Candidate %s has no capacity (%s); trying the next", candidate, code)
                continue
            if errors:
                self.log.info("Started candidate %s after: %s", candidate, errors)
            return _Round(targets=[candidate], acted=[candidate], views=views)
        raise FleetError(
            "No candidate could be started: " + "; ".join(f"{c}: {errors[c]}" for c in candidates)
        )


class FleetStopInstancesOperator(_FleetInstanceActionOperator):
    """Stop a list of EC2 instances with one StopInstances call, pending ones waited out first
    (EC2 cannot stop a starting instance); then wait for ``stopped``. Returns the instance IDs;
    pushes XCom ``stopped`` and ``already_stopped``.

    :param force: force the stop (no clean OS shutdown); not templated, since a rendered
        ``"False"`` would read as true
    """

    template_fields: Sequence[str] = aws_template_fields("instance_ids")

    action = "stop"
    target_state = "stopped"
    states = ec2.STOP_STATES
    api_call = "StopInstances"
    already_label = "Already stopped or stopping"
    acted_key = "stopped"
    already_key = "already_stopped"

    def __init__(self, *, instance_ids: Sequence[str] | str, force: bool = False, **kwargs: Any) -> None:
        super().__init__(instance_ids=instance_ids, **kwargs)
        self.force = force

    def _call(self, instance_ids: list[str]) -> None:
        self.hook.conn.stop_instances(InstanceIds=instance_ids, Force=self.force)
