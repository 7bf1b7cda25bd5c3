"""What a reconcile does to the pool, decided from one :class:`PoolView`: a pure function.

- Scale up: desired = clamp(claimed + buffer, min, max). Booting instances are part of the
  group's capacity already, so running this again while they boot asks for nothing more: the
  reference's ``total + (buffer - idle)`` counted only ready ones and overshot on every refresh.
- Scale in only by name: free instances above ``max_idle`` (the oldest first) are claimed for
  retirement, then terminated with the desired-capacity decrement. Lowering the desired capacity
  instead would let the group pick its victim, which may be an instance being claimed that very
  moment.
- Replace free instances past ``max_idle_age`` (image drift), failing readiness
  ``failures_to_replace`` reconciles in a row, or carrying an interruption or rebalance notice:
  retire and terminate them without the decrement, so the group launches their successors.

Every decision carries the numbers behind it, for the task log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from operators.pool_config import PoolConfig
from operators.pool_view import Machine, PoolView


@dataclass(frozen=True)
class Retirement:
    instance_id: str
    decrement: bool  # True: scale in; False: replace (the group launches a successor)
    reason: str


@dataclass(frozen=True)
class ReconcilePlan:
    desired: int | None  # the new desired capacity, None to leave it
    retire: tuple[Retirement, ...]
    lines: tuple[str, ...] = field(default=())


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def bounds(view: PoolView, config: PoolConfig) -> tuple[int, int]:
    """The desired capacity's range: the config's, inside the group's own."""
    return max(config.min_size, view.min_size), min(config.max_size, view.max_size)


def scale_up_target(view: PoolView, config: PoolConfig) -> int:
    """claimed + buffer, clamped: the capacity the pool wants now (also the API's "ask at once")."""
    low, high = bounds(view, config)
    return clamp(len(view.used) + config.buffer, low, high)


def _replacement_reason(machine: Machine, config: PoolConfig, now: datetime) -> str | None:
    if machine.notice:
        return f"carries the notice {machine.notice}"
    age = machine.age_seconds(now)
    if age > config.max_idle_age.total_seconds():
        return f"idle and {age / 3600:.1f} h old, past max_idle_age {config.max_idle_age}"
    if machine.failures >= config.readiness.failures_to_replace:
        limit = config.readiness.failures_to_replace
        return f"not ready {machine.failures} reconciles in a row (failures_to_replace {limit})"
    return None


def plan_reconcile(view: PoolView, config: PoolConfig, now: datetime) -> ReconcilePlan:
    free = view.free
    ready = [m for m in free if m.ready]
    booting = [m for m in free if not m.ready]
    lines = [
        f"Current machines: {len(view.machines)}, Idle: {len(ready)} ready + {len(booting)} booting, "
        f"Used: {len(view.used)}, Retiring: {len(view.retiring)} (group {view.group}, desired {view.desired})"
    ]
    low, high = bounds(view, config)
    target = scale_up_target(view, config)
    retire: list[Retirement] = []

    # Scale in by name, oldest first: free above max_idle, and whatever the group holds above max.
    excess = max(len(free) - config.max_idle, view.desired - high, 0)
    oldest = sorted(free, key=lambda m: m.age_seconds(now), reverse=True)
    for machine in oldest[:excess]:
        retire.append(
            Retirement(machine.instance_id, True, f"free {len(free)} above max_idle {config.max_idle}")
            if len(free) > config.max_idle
            else Retirement(machine.instance_id, True, f"desired {view.desired} above max_size {high}")
        )
    scaled_in = {r.instance_id for r in retire}
    for machine in free:
        reason = None if machine.instance_id in scaled_in else _replacement_reason(machine, config, now)
        if reason:
            retire.append(Retirement(machine.instance_id, False, reason))
    for r in retire:
        verb = "Scale in" if r.decrement else "Replace"
        lines.append(f"{verb} {r.instance_id}: {r.reason}")

    after_scale_in = view.desired - len(scaled_in)
    desired = None
    if after_scale_in < target:
        desired = target
        lines.append(
            f"Scaling to: {target} (claimed {len(view.used)} + buffer {config.buffer}, range {low}..{high}; "
            f"booting ones counted)"
        )
    elif after_scale_in < low:
        desired = low
        lines.append(f"Scaling to: {low} (min_size)")
    else:
        lines.append(
            f"Desired stays {after_scale_in}: claimed {len(view.used)} + buffer {config.buffer} = "
            f"{len(view.used) + config.buffer}, free {len(free) - len(scaled_in)} "
            f"within max_idle {config.max_idle}"
        )
    return ReconcilePlan(desired=desired, retire=tuple(retire), lines=tuple(lines))
