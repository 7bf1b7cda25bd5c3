"""Allocations at once, from many threads, over HTTP: against the fleet simulator's endpoint,
which answers one AWS call at a time as AWS's own consistency would (moto in-process is not
thread-safe, so the in-process tests cannot race)."""

from __future__ import annotations

import threading

import pytest
from fleet_testing import wait_for
from operators.pool_config import parse_pool_config
from operators.pool_service import NoneReady, PoolService
from pool_testing import GROUP, TABLE, CodeServers, make_group

from fleet_sim import FleetSimulator


@pytest.fixture
def sim(monkeypatch):
    with FleetSimulator(roles=[]) as simulator:
        monkeypatch.setenv("AWS_ENDPOINT_URL", simulator.endpoint_url)
        yield simulator


def in_service(sim, size: int) -> list[str]:
    """The group's instances once all ``size`` have booted (the simulator launches them Pending)."""

    def members():
        (group,) = sim.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
            "AutoScalingGroups"
        ]
        states = {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}
        return list(states) if len(states) == size and set(states.values()) == {"InService"} else None

    return wait_for(members, timeout=30, what=f"{size} instances in service")


def test_fifty_projects_ten_ready_instances(sim):
    servers = CodeServers()
    try:
        make_group(desired=10)
        servers.ready.update(in_service(sim, 10))
        config = parse_pool_config(
            {"claim_table": TABLE, "buffer": 5, "max_size": 40, "readiness": {"url": servers.url}}
        )
        results: dict[str, str] = {}
        refused: list[str] = []
        start = threading.Barrier(50)

        def allocate(project: str) -> None:
            pool = PoolService(config, sim.client("autoscaling"), sim.client("ec2"), sim.client("dynamodb"))
            start.wait()
            try:
                results[project] = pool.allocate(project).machine.instance_id
            except NoneReady:
                refused.append(project)

        threads = [threading.Thread(target=allocate, args=(f"project-{n}",)) for n in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert len(results) == 10 and len(set(results.values())) == 10
        assert len(refused) == 40
        pool = PoolService(config, sim.client("autoscaling"), sim.client("ec2"), sim.client("dynamodb"))
        view = pool.look(check_free=False)
        # The table and the tags agree, and no instance is in two claims.
        assert {m.instance_id: m.project for m in view.used} == {i: p for p, i in results.items()}
        assert {m.instance_id: m.tags["fleet:pool-project"] for m in view.used} == {
            i: p for p, i in results.items()
        }
        pool.reconcile()
        assert pool.look(check_free=False).desired == 15  # 10 claimed + buffer 5
    finally:
        servers.stop()


def test_one_project_allocating_twice_at_once_gets_one_instance(sim):
    servers = CodeServers()
    try:
        make_group(desired=4)
        servers.ready.update(in_service(sim, 4))
        config = parse_pool_config({"claim_table": TABLE, "readiness": {"url": servers.url}})
        got: list[tuple[str, bool]] = []
        start = threading.Barrier(8)

        def allocate() -> None:
            pool = PoolService(config, sim.client("autoscaling"), sim.client("ec2"), sim.client("dynamodb"))
            start.wait()
            allocation = pool.allocate("same-project")
            got.append((allocation.machine.instance_id, allocation.created))

        threads = [threading.Thread(target=allocate) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(got) == 8 and len({instance for instance, _ in got}) == 1
        assert sum(created for _, created in got) == 1
        table = sim.client("dynamodb").scan(TableName=TABLE)["Items"]
        assert sorted(item["pk"]["S"].split("#")[0] for item in table) == ["instance", "project"]
    finally:
        servers.stop()
