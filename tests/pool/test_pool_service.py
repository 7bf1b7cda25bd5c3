from __future__ import annotations

import boto3
import pytest
from moto import mock_aws
from operators.pool_config import parse_pool_config
from operators.pool_service import NoneReady, NotInPool, PoolService
from pool_testing import GROUP, TABLE, CodeServers, group, make_group, member_ids


@pytest.fixture
def servers():
    s = CodeServers()
    yield s
    s.stop()


@pytest.fixture
def world(monkeypatch, servers):
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    with mock_aws():
        yield servers


def service(servers, **overrides) -> PoolService:
    config = parse_pool_config(
        {
            "group": GROUP,
            "claim_table": TABLE,
            "buffer": 5,
            "max_size": 20,
            "max_idle": 8,
            "readiness": {"url": servers.url, "timeout": 1},
            **overrides,
        }
    )
    return PoolService(config, boto3.client("autoscaling"), boto3.client("ec2"), boto3.client("dynamodb"))


def test_allocate_is_idempotent_and_mirrored(world):
    make_group(desired=3)
    world.ready.update(member_ids())
    pool = service(world)
    first = pool.allocate("alpha")
    again = pool.allocate("alpha")
    assert first.created and not again.created
    assert again.machine.instance_id == first.machine.instance_id
    member = next(i for i in group()["Instances"] if i["InstanceId"] == first.machine.instance_id)
    assert member["ProtectedFromScaleIn"]
    tags = boto3.client("ec2").describe_tags(
        Filters=[{"Name": "resource-id", "Values": [first.machine.instance_id]}]
    )
    assert {t["Key"]: t["Value"] for t in tags["Tags"]}["fleet:pool-project"] == "alpha"


def test_not_ready_is_never_handed_out_and_asks_for_more(world):
    make_group(desired=2)
    pool = service(world)
    with pytest.raises(NoneReady, match="scale-up asked for"):
        pool.allocate("alpha")
    assert group()["DesiredCapacity"] == 5  # claimed 0 + buffer 5


def test_reconcile_during_boot_never_overshoots(world):
    make_group(desired=0)
    pool = service(world)
    for _ in range(3):
        plan = pool.reconcile()
        assert group()["DesiredCapacity"] == 5, plan.lines
    assert any("Scaling to: 5" in line for line in service(world).reconcile().lines) is False


def test_reconcile_scales_to_claimed_plus_buffer(world):
    make_group(desired=10)
    world.ready.update(member_ids())
    pool = service(world)
    for n in range(10):
        pool.allocate(f"p{n}")
    plan = pool.reconcile()
    assert group()["DesiredCapacity"] == 15, plan.lines
    assert plan.lines[0].startswith("Current machines: 10, Idle: 0 ready + 0 booting, Used: 10")


def test_reconcile_caps_at_max_size(world):
    make_group(desired=10)
    world.ready.update(member_ids())
    pool = service(world, max_size=12)
    for n in range(10):
        pool.allocate(f"p{n}")
    pool.reconcile()
    assert group()["DesiredCapacity"] == 12


def test_scale_in_above_max_idle_oldest_first(world):
    make_group(desired=12)
    world.ready.update(member_ids())
    plan = service(world).reconcile()
    assert sum(r.decrement for r in plan.retire) == 4
    assert group()["DesiredCapacity"] == 8
    assert len(member_ids()) == 8


def test_destroy_outside_the_group_terminates_nothing(world):
    make_group(desired=2)
    ec2 = boto3.client("ec2")
    outsider = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    with pytest.raises(NotInPool, match=outsider):
        service(world).destroy_instance(outsider)
    state = ec2.describe_instances(InstanceIds=[outsider])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "running"


def test_release_terminates_and_decrements(world):
    make_group(desired=3)
    world.ready.update(member_ids())
    pool = service(world)
    held = pool.allocate("alpha")
    pool.release("alpha")
    assert held.machine.instance_id not in member_ids()
    assert group()["DesiredCapacity"] == 2
    assert pool.table.project("alpha") is None


def test_notice_is_replaced_not_handed_out(world):
    make_group(desired=1)
    (only,) = member_ids()
    world.ready.add(only)
    boto3.client("ec2").create_tags(Resources=[only], Tags=[{"Key": "fleet:notice", "Value": "rebalance@x"}])
    pool = service(world)
    with pytest.raises(NoneReady):
        pool.allocate("alpha")
    plan = pool.reconcile()
    assert [(r.instance_id, r.decrement) for r in plan.retire] == [(only, False)]


def test_failing_readiness_replaced_after_n(world):
    make_group(desired=5)
    pool = service(world)
    for _ in range(2):
        assert not pool.reconcile().retire
    assert len(pool.reconcile().retire) == 5


def test_a_claim_whose_reply_was_lost_is_given_back_whole(world):
    # The API server died right after the claim's transaction: no tags, no protection, no reply.
    make_group(desired=2)
    world.ready.update(member_ids())
    pool = service(world)
    taken = member_ids()[0]
    pool.table.claim(taken, "alpha", "2026-12-02T12:00:00Z")
    retry = pool.allocate("alpha")
    assert (retry.machine.instance_id, retry.created, retry.claimed_at) == (
        taken,
        False,
        "2026-12-02T12:00:00Z",
    )
    member = next(i for i in group()["Instances"] if i["InstanceId"] == taken)
    assert member["ProtectedFromScaleIn"]
    tags = boto3.client("ec2").describe_tags(Filters=[{"Name": "resource-id", "Values": [taken]}])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags}["fleet:pool-claimed-at"] == "2026-12-02T12:00:00Z"
    # Nobody else can get it meanwhile.
    assert pool.allocate("beta").machine.instance_id != taken


def test_a_project_whose_instance_was_terminated_elsewhere_gets_a_new_one(world):
    make_group(desired=3)
    world.ready.update(member_ids())
    pool = service(world)
    lost = pool.allocate("alpha").machine.instance_id
    boto3.client("autoscaling").terminate_instance_in_auto_scaling_group(
        InstanceId=lost, ShouldDecrementDesiredCapacity=True
    )
    again = pool.allocate("alpha")
    assert again.created and again.machine.instance_id != lost
    assert pool.table.project("alpha")["instance_id"] == again.machine.instance_id
