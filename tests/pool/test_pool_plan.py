"""The reconcile decision as a pure function of one look at the pool."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from operators.pool_claims import Claims
from operators.pool_config import parse_pool_config
from operators.pool_plan import plan_reconcile, scale_up_target
from operators.pool_view import Machine, PoolView

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def machine(
    n: int,
    *,
    project=None,
    ready=True,
    age_h=1.0,
    lifecycle="InService",
    notice=None,
    failures=0,
    retiring=False,
):
    return Machine(
        instance_id=f"i-{n:017x}",
        lifecycle=lifecycle,
        state="running" if lifecycle == "InService" else "pending",
        launched_at=NOW - timedelta(hours=age_h),
        project=project,
        ready=ready,
        notice=notice,
        failures=failures,
        retiring=retiring,
    )


def view(machines, desired=None, min_size=0, max_size=100) -> PoolView:
    machines = tuple(machines)
    return PoolView(
        "vscode-asg",
        len(machines) if desired is None else desired,
        min_size,
        max_size,
        machines,
        Claims({}, {}, {}),
    )


def config(**overrides):
    return parse_pool_config({"buffer": 5, "max_size": 20, "max_idle": 8, **overrides})


def test_the_reference_table_counts_booting_ones():
    # 10 total, 2 idle: the reference scaled to 13 (10 + 5 - 2). Here 8 are claimed: 8 + 5 = 13.
    machines = [machine(n, project=f"p{n}") for n in range(8)] + [machine(8), machine(9)]
    plan = plan_reconcile(view(machines), config(), NOW)
    assert plan.desired == 13
    assert (
        plan.lines[0] == "Current machines: 10, Idle: 2 ready + 0 booting, Used: 8, Retiring: 0 "
        "(group vscode-asg, desired 10)"
    )
    assert plan.lines[-1].startswith("Scaling to: 13 (claimed 8 + buffer 5")
    # The 3 launched are booting: the next reconcile asks for nothing more (the reference: 16).
    booting = machines + [machine(n, ready=False, lifecycle="Pending") for n in range(10, 13)]
    again = plan_reconcile(view(booting), config(), NOW)
    assert again.desired is None and not again.retire


def test_capped_by_max_size_and_the_groups_max():
    machines = [machine(n, project=f"p{n}") for n in range(18)]
    assert plan_reconcile(view(machines), config(), NOW).desired == 20
    assert plan_reconcile(view(machines, max_size=19), config(), NOW).desired == 19


def test_scale_in_only_by_name_oldest_first():
    machines = [machine(n, age_h=n) for n in range(12)]
    plan = plan_reconcile(view(machines), config(), NOW)
    assert [r.instance_id for r in plan.retire if r.decrement] == [m.instance_id for m in machines[-4:][::-1]]
    assert plan.desired is None  # never lowered by a number: the group would choose who goes


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"notice": "spot-terminate@2026-12-02T11:59:00Z"}, "notice"),
        ({"age_h": 25}, "max_idle_age"),
        ({"failures": 3, "ready": False}, "failures_to_replace"),
    ],
)
def test_replaced_without_decrement(kwargs, reason):
    plan = plan_reconcile(view([machine(0, **kwargs)]), config(), NOW)
    (retirement,) = plan.retire
    assert not retirement.decrement and reason in retirement.reason


def test_claimed_ones_are_never_retired():
    machines = [machine(n, project=f"p{n}", age_h=100, notice="rebalance@x") for n in range(3)]
    assert not plan_reconcile(view(machines), config(), NOW).retire


@settings(max_examples=200, deadline=None)
@given(
    claimed=st.integers(0, 30),
    free=st.integers(0, 30),
    booting=st.integers(0, 10),
    buffer=st.integers(0, 8),
    max_size=st.integers(8, 40),
)
def test_never_above_claimed_plus_buffer_nor_max(claimed, free, booting, buffer, max_size):
    cfg = config(buffer=buffer, max_size=max_size, max_idle=max(buffer, 8))
    machines = [machine(n, project=f"p{n}") for n in range(claimed)]
    machines += [machine(100 + n) for n in range(free)]
    machines += [machine(200 + n, ready=False, lifecycle="Pending") for n in range(booting)]
    pool = view(machines)
    plan = plan_reconcile(pool, cfg, NOW)
    after = (plan.desired if plan.desired is not None else pool.desired) - sum(
        r.decrement for r in plan.retire
    )
    if plan.desired is not None:
        assert plan.desired == scale_up_target(pool, cfg) <= max(claimed + buffer, 0)
        assert plan.desired <= max_size
    assert after >= min(claimed, max_size) or plan.desired is None
