"""Allocations at once, from many threads, over HTTP: against the fleet simulator's endpoint,
which answers one AWS call at a time as AWS's own consistency would (moto in-process is not
thread-safe, so the in-process tests cannot race)."""

from __future__ import annotations

import threading

import pytest
from operators.pool_config import parse_pool_config
from operators.pool_service import NoneReady, PoolService
from pool_testing import GROUP, TABLE, CodeServers, make_group

from fleet_sim import FleetSimulator


@pytest.fixture
def sim(monkeypatch):
    with FleetSimulator(roles=[]) as simulator:
        monkeypatch.setenv("AWS_ENDPOINT_URL", simulator.endpoint_url)
        yield simulator


def test_fifty_projects_ten_ready_instances(sim):
    servers = CodeServers()
    try:
        make_group(desired=10)
        autoscaling = sim.client("autoscaling")
        group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][
            0
        ]
        servers.ready.update(i["InstanceId"] for i in group["Instances"])
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
