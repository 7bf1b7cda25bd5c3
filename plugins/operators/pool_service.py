"""The pool's operations: allocate, release, status and reconcile, on the three AWS clients.

The API (``plugins/fleet_pool_api.py``) and the reconcile task (``pool_reconcile.py``) both call
these; neither holds state of its own. The claim table is the truth; the instance's tags and its
scale-in protection mirror it, and every reconcile repairs a mirror a crash left half-made.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.config import Config

from operators.fleet_aws import with_default_retries
from operators.pool_claims import HEALTH, INSTANCE, PROJECT, ClaimConflict, ClaimTable
from operators.pool_config import PoolConfig
from operators.pool_plan import ReconcilePlan, plan_reconcile, scale_up_target
from operators.pool_readiness import check_readiness
from operators.pool_view import TAG_CLAIMED_AT, TAG_PROJECT, Machine, PoolError, PoolView, read_pool

log = logging.getLogger(__name__)


class NoneReady(PoolError):
    """No instance is ready for the project now; a scale-up was asked for."""


class NotInPool(PoolError):
    """The instance or project is not this pool's."""


@dataclass(frozen=True)
class Allocation:
    machine: Machine
    project_id: str
    claimed_at: str
    created: bool  # False: the project already held it (an allocation is idempotent per project)


def _now_text(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def pool_clients(config: PoolConfig) -> tuple[Any, Any, Any]:
    """The Auto Scaling, EC2 and DynamoDB clients of the config's connection, with the fleet's
    bounded retries (botocore's standard mode)."""
    return tuple(
        AwsBaseHook(
            aws_conn_id=config.aws_conn_id,
            region_name=config.region,
            client_type=service,
            config=Config(**with_default_retries(None, config.aws_conn_id)),
        ).conn
        for service in ("autoscaling", "ec2", "dynamodb")
    )


class PoolService:
    def __init__(self, config: PoolConfig, autoscaling: Any, ec2: Any, dynamodb: Any) -> None:
        self.config = config
        self.autoscaling, self.ec2 = autoscaling, ec2
        self.table = ClaimTable(dynamodb, config.claim_table)

    def look(self, check_free: bool = True) -> PoolView:
        view = read_pool(self.autoscaling, self.ec2, self.table, self.config.group)
        if check_free:
            view = view.with_readiness(check_readiness(self.config.readiness, view.free))
        return view

    def status(self, now: datetime | None = None) -> dict[str, Any]:
        """The pool as the API shows it; the reference's keys (``totalMachines``…) included."""
        now = now or datetime.now(UTC)
        view = self.look()
        ready = [m for m in view.free if m.ready]
        counts = {
            "total": len(view.machines),
            "idle": len(ready),
            "booting": len(view.free) - len(ready),
            "used": len(view.used),
            "retiring": len(view.retiring),
            "desired": view.desired,
            "max": min(self.config.max_size, view.max_size),
            "buffer": self.config.buffer,
        }
        reference = {
            "totalMachines": counts["total"],
            "idleMachines": counts["idle"],
            "usedMachines": counts["used"],
        }
        return {**counts, **reference, "machines": [m.as_dict(now) for m in view.machines]}

    # -- allocate, release ---------------------------------------------------------------------

    def held(self, project_id: str, view: PoolView | None = None) -> Allocation | None:
        """The project's allocation if it has one whose instance is still in the group."""
        item = self.table.project(project_id)
        if item is None:
            return None
        view = view or self.look(check_free=False)
        machine = view.machine(item["instance_id"])
        if machine is None:  # not in a look that may predate the instance: look again
            machine = self.look(check_free=False).machine(item["instance_id"])
        if machine is None:
            # Its instance left the group (terminated by someone else): the claim is stale, and
            # would block every new claim of the project. The reconcile drops these too.
            log.warning(
                "Project %s's instance %s is gone; dropping the claim", project_id, item["instance_id"]
            )
            self.table.forget([PROJECT + project_id, INSTANCE + item["instance_id"]])
            return None
        if machine.retiring:
            return None
        self._mirror(machine, project_id, item["claimed_at"])
        return Allocation(machine, project_id, item["claimed_at"], created=False)

    def allocate(self, project_id: str, now: datetime | None = None) -> Allocation:
        now = now or datetime.now(UTC)
        view = self.look(check_free=False)
        existing = self.held(project_id, view)
        if existing:
            return existing
        candidates = [m for m in view.free if m.in_service and not m.notice and not m.failures]
        candidates.sort(key=lambda m: m.age_seconds(now), reverse=True)  # the longest waiting first
        ready = check_readiness(self.config.readiness, candidates)
        for machine in candidates:
            if not ready.get(machine.instance_id):
                continue
            claimed_at = _now_text(now)
            try:
                self.table.claim(machine.instance_id, project_id, claimed_at)
            except ClaimConflict as conflict:
                if conflict.project_has_one:  # the same project, allocating at the same moment
                    again = self.held(project_id)
                    if again:
                        return again
                continue  # someone else took this instance: the next one
            self._mirror(machine, project_id, claimed_at)
            log.info("Allocated %s (%s) to project %s", machine.instance_id, machine.private_ip, project_id)
            return Allocation(machine, project_id, claimed_at, created=True)
        self.scale_up(view)
        raise NoneReady(
            f"no ready instance in group {self.config.group} for project {project_id!r} "
            f"({len(view.free)} free, {len(ready)} checked, {sum(ready.values())} ready); scale-up asked for"
        )

    def release(self, project_id: str, now: datetime | None = None) -> Machine:
        """Give the project's instance back: it is terminated and the group's desired decremented."""
        item = self.table.project(project_id)
        if item is None:
            raise NotInPool(f"project {project_id!r} holds no instance of group {self.config.group}")
        return self._terminate_claimed(project_id, item["instance_id"], now)

    def destroy_instance(self, instance_id: str, now: datetime | None = None) -> Machine:
        """Terminate a pool instance by id (the reference's ``POST /destroy``): only this group's."""
        view = self.look(check_free=False)
        machine = view.machine(instance_id)
        if machine is None:
            raise NotInPool(
                f"instance {instance_id!r} is not in group {self.config.group}: nothing terminated"
            )
        if machine.project:
            return self._terminate_claimed(machine.project, instance_id, now)
        if not machine.retiring:
            try:
                self.table.retire(instance_id, _now_text(now or datetime.now(UTC)))
            except ClaimConflict:  # a project claimed it this moment: it is theirs now
                return self.destroy_instance(instance_id, now)
        self._terminate(view, instance_id, decrement=True)
        return machine

    def _terminate_claimed(self, project_id: str, instance_id: str, now: datetime | None) -> Machine:
        view = self.look(check_free=False)
        machine = view.machine(instance_id)
        self.table.release(project_id, instance_id, _now_text(now or datetime.now(UTC)))
        if machine is not None:
            self._terminate(view, instance_id, decrement=True)
            return machine
        return Machine(
            instance_id, lifecycle="Gone", state="terminated", launched_at=None, project=project_id
        )

    # -- scaling -------------------------------------------------------------------------------

    def scale_up(self, view: PoolView) -> int | None:
        target = scale_up_target(view, self.config)
        if target > view.desired:
            self._set_desired(target)
            return target
        return None

    def reconcile(self, paused: bool = False, now: datetime | None = None) -> ReconcilePlan:
        now = now or datetime.now(UTC)
        view = self.look()
        view = view.with_readiness({}, self._count_failures(view))
        plan = plan_reconcile(view, self.config, now)
        for line in plan.lines:
            log.info("%s", line)
        if paused:
            log.info("Paused: no scaling, no retirement (the decisions above are not carried out)")
            return plan
        for machine in view.used:
            self._mirror(machine, machine.project, machine.claimed_at)
        for retirement in plan.retire:
            try:
                self.table.retire(retirement.instance_id, _now_text(now))
            except ClaimConflict:
                log.info("Kept %s: claimed by a project a moment ago", retirement.instance_id)
                continue
            view = self._terminate(view, retirement.instance_id, decrement=retirement.decrement)
        if plan.desired is not None:
            self._set_desired(plan.desired)
        self._forget_gone(view)
        return plan

    def _count_failures(self, view: PoolView) -> dict[str, int]:
        """Each free in-service instance's readiness failures in a row, stored when they change."""
        counts = {}
        for machine in view.free:
            if machine.in_service:
                counts[machine.instance_id] = 0 if machine.ready else machine.failures + 1
        changed = {i: n for i, n in counts.items() if n != view.machine(i).failures}
        if changed:
            self.table.set_failures(changed)
        return counts

    def _forget_gone(self, view: PoolView) -> None:
        """Drop the claims of instances that left the group (terminated by us or by anyone)."""
        present = {m.instance_id for m in view.machines}
        claims = view.claims
        keys = [INSTANCE + i for i in claims.by_instance if i not in present]
        keys += [HEALTH + i for i in claims.failures if i not in present]
        for project_id, item in claims.by_project.items():
            if item["instance_id"] not in present:
                log.warning(
                    "Project %s lost its instance %s (no longer in the group)",
                    project_id,
                    item["instance_id"],
                )
                keys.append(PROJECT + project_id)
        if keys:
            self.table.forget(keys)

    # -- AWS writes ----------------------------------------------------------------------------

    def _mirror(self, machine: Machine, project_id: str, claimed_at: str) -> None:
        if machine.tags.get(TAG_PROJECT) != project_id or machine.tags.get(TAG_CLAIMED_AT) != claimed_at:
            self.ec2.create_tags(
                Resources=[machine.instance_id],
                Tags=[
                    {"Key": TAG_PROJECT, "Value": project_id},
                    {"Key": TAG_CLAIMED_AT, "Value": claimed_at},
                ],
            )
        if not machine.protected:
            self.autoscaling.set_instance_protection(
                AutoScalingGroupName=self.config.group,
                InstanceIds=[machine.instance_id],
                ProtectedFromScaleIn=True,
            )

    def _terminate(self, view: PoolView, instance_id: str, decrement: bool) -> PoolView:
        """Terminate; returns the view with the desired capacity the group now has."""
        # The group refuses a decrement below its MinSize; at the floor it launches a successor.
        decrement = decrement and view.desired > view.min_size
        self.autoscaling.terminate_instance_in_auto_scaling_group(
            InstanceId=instance_id, ShouldDecrementDesiredCapacity=decrement
        )
        return replace(view, desired=view.desired - 1) if decrement else view

    def _set_desired(self, desired: int) -> None:
        self.autoscaling.set_desired_capacity(
            AutoScalingGroupName=self.config.group, DesiredCapacity=desired, HonorCooldown=False
        )
