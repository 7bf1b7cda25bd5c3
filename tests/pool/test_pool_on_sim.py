"""The pool on the fleet simulator's Auto Scaling group: instances boot (Pending, then InService,
then code-server ready), so the reconcile meets booting instances as it would on AWS."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
from fleet_testing import wait_for
from operators.pool_config import parse_pool_config
from operators.pool_service import NoneReady, PoolService
from pool_testing import GROUP, TABLE, make_group

from fleet_sim import FleetSimulator
from fleet_sim.groups import code_server_url
from instance_agent.imds import ImdsClient
from instance_agent.notice_watch import NoticeWatch

SCENARIO = {"transition_delay": 1.0, "ready_delay": 0.5}


@pytest.fixture
def sim(monkeypatch):
    with FleetSimulator(roles=[], scenario=SCENARIO) as simulator:
        monkeypatch.setenv("AWS_ENDPOINT_URL", simulator.endpoint_url)
        yield simulator


def pool(sim, **overrides) -> PoolService:
    url = code_server_url(sim.endpoint_url)
    config = parse_pool_config({"claim_table": TABLE, "readiness": {"url": url, "timeout": 1}, **overrides})
    return PoolService(config, sim.client("autoscaling"), sim.client("ec2"), sim.client("dynamodb"))


def members(sim) -> dict[str, str]:
    (group,) = sim.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
        "AutoScalingGroups"
    ]
    return {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}


def test_instances_boot_then_answer_healthz(sim):
    make_group(desired=2)
    sim.client("autoscaling")  # the group's launches are seen on the next call
    booting = wait_for(lambda: members(sim), what="the group's instances")
    assert set(booting.values()) == {"Pending"}
    instance = next(iter(booting))
    health = f"{sim.endpoint_url}/_fleet_sim/code-server/{instance}/healthz"
    assert httpx.get(health).status_code == 503
    wait_for(lambda: set(members(sim).values()) == {"InService"}, timeout=10, what="InService")
    wait_for(lambda: httpx.get(health).status_code == 200, timeout=10, what="code-server ready")


def test_reconciles_while_booting_never_overshoot_and_the_pool_fills(sim):
    make_group(desired=0)
    service = pool(sim)
    desired = []
    for _ in range(6):  # reconciles while the first 5 boot
        service.reconcile()
        desired.append(service.look(check_free=False).desired)
    assert desired == [5] * 6
    wait_for(lambda: service.look().free and all(m.ready for m in service.look().free), timeout=20)
    assert len(service.look().free) == 5
    allocation = service.allocate("alpha")
    service.reconcile()
    assert service.look(check_free=False).desired == 6  # 1 claimed + buffer 5
    assert allocation.machine.instance_id in members(sim)
    assert allocation.machine.public_ip and allocation.machine.private_ip  # as a subnet with public IPs gives


def test_an_instance_that_never_becomes_ready_is_never_handed_out_and_is_replaced(sim):
    make_group(desired=1)
    (instance,) = wait_for(lambda: members(sim))
    sim.inject({"kind": "never_ready", "instance": instance})
    service = pool(sim, buffer=1, max_idle=1)
    wait_for(lambda: members(sim)[instance] == "InService", timeout=10)
    with pytest.raises(NoneReady):
        service.allocate("alpha")
    plans = [service.reconcile() for _ in range(3)]  # failures_to_replace: 3
    assert [r.instance_id for r in plans[-1].retire] == [instance]
    assert instance not in members(sim)


def test_an_idle_instance_with_a_spot_notice_is_never_handed_out_and_is_replaced(sim):
    # The notice reaches the pool as on AWS: IMDS, the instance's watch-notices, its tag.
    make_group(desired=2)
    service = pool(sim, buffer=2, max_idle=2)
    wait_for(lambda: len(service.look().free) == 2 and all(m.ready for m in service.look().free), timeout=20)
    noticed, other = sorted(members(sim))
    sim.inject({"kind": "spot_interruption", "instance": noticed, "since": "start", "notice_seconds": 600})
    watch = NoticeWatch(ImdsClient(sim.fleet.imds_url(sim.host(noticed))), sim.client("ec2"), noticed)
    wait_for(watch.check, what="the notice on IMDS")

    assert service.allocate("alpha").machine.instance_id == other
    with pytest.raises(NoneReady):
        service.allocate("beta")
    plan = service.reconcile()
    assert [machine.instance_id for machine in plan.retire] == [noticed]
    assert noticed not in members(sim)
    wait_for(lambda: any(m.ready for m in service.look().free), timeout=20, what="the replacement ready")
    assert service.allocate("beta").machine.instance_id not in (noticed, other)


@pytest.mark.parametrize("size", [10, 100])
def test_one_look_is_three_calls_whatever_the_size(sim, size):
    make_group(desired=size, max_size=size)
    wait_for(lambda: set(members(sim).values()) == {"InService"}, timeout=60)
    service = pool(sim, buffer=0, max_size=size, max_idle=size)
    since = time.time()
    service.reconcile()
    reads = Counter(
        call["operation"]
        for call in sim.api_calls(since=since)
        if call["operation"] in ("DescribeAutoScalingGroups", "DescribeInstances", "Scan")
    )
    assert reads == {"DescribeAutoScalingGroups": 1, "DescribeInstances": 1, "Scan": 1}


def test_a_group_sized_again_while_booting_launches_nothing_more(sim):
    make_group(desired=3)
    autoscaling = sim.client("autoscaling")
    wait_for(lambda: len(members(sim)) == 3)
    for _ in range(3):  # as three allocations that found none ready would
        autoscaling.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=3, HonorCooldown=False)
        assert len(members(sim)) == 3
