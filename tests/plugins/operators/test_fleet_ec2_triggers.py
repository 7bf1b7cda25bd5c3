"""Tests for operators.fleet_ec2_triggers: waiting on the states of a list of instances."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import pytest
from fleet_operator_testing import launch, messages, set_tags
from operators import fleet_ec2
from operators.fleet_ec2 import SETTLED, default_failure_states
from operators.fleet_ec2_triggers import FleetInstanceStateTrigger
from operators.fleet_wait import ERROR, FAILED, SUCCESS, TIMEOUT

from instance_agent.protocol import AgentReport

NOW = datetime(2026, 11, 23, 0, 30, tzinfo=UTC)


def _trigger(instance_ids, target_state, **kwargs) -> FleetInstanceStateTrigger:
    kwargs.setdefault("waiter_delay", 0)
    kwargs.setdefault("waiter_max_attempts", 3)
    trigger = FleetInstanceStateTrigger(instance_ids=instance_ids, target_state=target_state, **kwargs)
    trigger.clock = lambda: NOW
    return trigger


async def _run(trigger: FleetInstanceStateTrigger) -> dict:
    events = [event async for event in trigger.run()]
    assert len(events) == 1
    return events[0].payload


def _agent_tags(state: str, heartbeat_age_s: float, run_date: str = "2026-11-23", progress: str = "2/4"):
    return AgentReport(
        role="pricing",
        run_date=run_date,
        state=state,
        heartbeat=NOW - timedelta(seconds=heartbeat_age_s),
        progress=progress,
    ).to_tags()


class TestDefaultFailureStates:
    @pytest.mark.parametrize(
        ("target", "failure"),
        [
            ("running", ["shutting-down", "stopping", "terminated"]),
            ("stopped", ["shutting-down", "terminated"]),
            ("terminated", []),
            (SETTLED, ["shutting-down", "terminated"]),
        ],
    )
    def test_states_from_which_the_target_cannot_be_reached(self, target, failure):
        assert default_failure_states(target) == failure


class TestFleetInstanceStateTrigger:
    @pytest.mark.parametrize(
        "kwargs",
        [
            {},
            {
                "failure_states": ["terminated"],
                "require_status_ok": True,
                "heartbeat_grace": 300,
                "run_date": "2026-11-23",
                "waiter_delay": 60,
                "waiter_max_attempts": 720,
                "aws_conn_id": "fleet_aws",
                "region_name": "eu-west-1",
                "verify": False,
                "botocore_config": {"retries": {"mode": "adaptive"}},
            },
        ],
    )
    def test_serialize_and_rebuild_from_the_classpath(self, kwargs):
        trigger = FleetInstanceStateTrigger(instance_ids=["i-1", "i-2"], target_state="running", **kwargs)
        classpath, serialized = trigger.serialize()
        assert classpath == "operators.fleet_ec2_triggers.FleetInstanceStateTrigger"
        module, name = classpath.rsplit(".", 1)
        rebuilt = getattr(importlib.import_module(module), name)(**serialized)
        assert rebuilt.serialize() == trigger.serialize()
        assert serialized["instance_ids"] == ["i-1", "i-2"]
        assert serialized["failure_states"] == kwargs.get(
            "failure_states", ["shutting-down", "stopping", "terminated"]
        )

    def test_settled_serializes_and_rebuilds(self):
        trigger = FleetInstanceStateTrigger(instance_ids=["i-1"], target_state=SETTLED, waiter_delay=5)
        classpath, serialized = trigger.serialize()
        rebuilt = importlib.import_module(classpath.rsplit(".", 1)[0]).FleetInstanceStateTrigger(**serialized)
        assert rebuilt.serialize() == trigger.serialize()
        assert serialized["target_state"] == "settled"
        assert serialized["failure_states"] == ["shutting-down", "terminated"]

    def test_target_cannot_also_be_a_failure(self):
        with pytest.raises(ValueError, match="target_state 'stopped' is also listed in failure_states"):
            _trigger(["i-1"], "stopped", failure_states=["stopped"])

    def test_settled_has_no_status_checks(self):
        with pytest.raises(ValueError, match="require_status_ok needs target_state 'running'"):
            FleetInstanceStateTrigger(instance_ids=["i-1"], target_state=SETTLED, require_status_ok=True)

    async def test_success_carries_every_instances_state_and_tags(self, api, client):
        ids = launch(client, 2, tags={"Name": "worker"})
        api.reset()
        event = await _run(_trigger(ids, "running"))
        assert event["status"] == SUCCESS
        assert event["message"] == "2 instance(s) running"
        assert event["instances"] == {i: {"state": "running", "tags": {"Name": "worker"}} for i in ids}
        assert api.count("DescribeInstances") == 1

    async def test_waits_while_instances_are_on_their_way(self, api, client, task_log):
        ids = launch(client, 2, state="stopped")
        api.report_states(ids[1], "stopping", "stopping")
        api.reset()
        event = await _run(_trigger(ids, "stopped", waiter_max_attempts=5))
        assert event["status"] == SUCCESS
        assert api.count("DescribeInstances") == 3
        assert messages(task_log).count("Waiting for stopped: 1 of 2 outstanding") == 2
        assert f"  {ids[1]}: stopping" in messages(task_log)

    async def test_failure_state_fails_at_once_naming_the_instance(self, api, client):
        stopped = launch(client, 1, state="stopped")
        terminated = launch(client, 1, state="terminated")
        api.reset()
        event = await _run(_trigger([*stopped, *terminated], "stopped", waiter_max_attempts=10))
        assert event["status"] == FAILED
        assert event["message"].startswith(f"{terminated[0]} is terminated while waiting for stopped")
        assert event["instances"][stopped[0]]["state"] == "stopped"
        assert api.count("DescribeInstances") == 1

    async def test_timeout_names_the_instances_still_outstanding(self, api, client):
        running = launch(client, 1)
        stopped = launch(client, 1, state="stopped")
        api.reset()
        event = await _run(_trigger([*running, *stopped], "stopped", waiter_max_attempts=2))
        assert event == {
            "status": TIMEOUT,
            "message": (
                f"instances did not reach 'stopped' within 2 polls every 0 s; still not there: {running[0]}"
            ),
        }
        assert api.count("DescribeInstances") == 2

    async def test_unknown_instance_is_an_error_event_naming_it(self, api, client):
        ids = launch(client, 1)
        event = await _run(_trigger([*ids, "i-0000000000000dead"], "running"))
        assert event["status"] == ERROR
        assert "i-0000000000000dead" in event["message"]

    async def test_silent_agent_fails_the_wait(self, api, client):
        ids = launch(client, 2)
        set_tags(client, ids[0], _agent_tags("running", heartbeat_age_s=30))
        set_tags(client, ids[1], _agent_tags("running", heartbeat_age_s=600))
        event = await _run(_trigger(ids, "stopped", heartbeat_grace=300, run_date="2026-11-23"))
        assert event["status"] == FAILED
        assert event["message"] == f"agent on {ids[1]} silent for 600 s"
        assert event["instances"][ids[1]]["tags"]["fleet:state"] == "running"

    async def test_heartbeat_of_another_run_date_or_a_finished_agent_is_not_checked(self, api, client):
        ids = launch(client, 2)
        set_tags(client, ids[0], _agent_tags("running", heartbeat_age_s=9000, run_date="2026-11-22"))
        set_tags(client, ids[1], _agent_tags("succeeded", heartbeat_age_s=9000))
        event = await _run(_trigger(ids, "stopped", heartbeat_grace=300, run_date="2026-11-23"))
        assert event["status"] == TIMEOUT

    async def test_logs_the_agents_progress_while_waiting(self, api, client, task_log):
        ids = launch(client, 1)
        set_tags(client, ids[0], _agent_tags("running", heartbeat_age_s=42, progress="3/4"))
        await _run(_trigger(ids, "stopped", heartbeat_grace=300, waiter_max_attempts=1))
        assert f"  {ids[0]}: running, agent running 3/4 for 2026-11-23, heartbeat 42 s ago" in messages(
            task_log
        )

    async def test_status_checks_are_read_when_asked(self, api, client):
        ids = launch(client, 2)
        api.reset()
        event = await _run(_trigger(ids, "running", require_status_ok=True))
        assert event["status"] == SUCCESS
        assert api.params("DescribeInstanceStatus") == [{"InstanceIds": ids}]

    async def test_status_checks_not_ok_keep_waiting(self, api, client, monkeypatch):
        ids = launch(client, 1)
        trigger = _trigger(ids, "running", require_status_ok=True, waiter_max_attempts=2)
        monkeypatch.setattr(
            trigger.hook.conn,
            "describe_instance_status",
            lambda **kwargs: {
                "InstanceStatuses": [
                    {
                        "InstanceId": ids[0],
                        "InstanceStatus": {"Status": "initializing"},
                        "SystemStatus": {"Status": "ok"},
                    }
                ]
            },
        )
        event = await _run(trigger)
        assert event["status"] == TIMEOUT
        assert ids[0] in event["message"]

    async def test_settled_waits_out_transitions_and_accepts_either_end(self, api, client):
        running = launch(client, 1)
        stopped = launch(client, 1, state="stopped")
        api.report_states(stopped[0], "stopping")
        api.report_states(running[0], "pending", "pending")
        api.reset()
        event = await _run(_trigger([*running, *stopped], SETTLED, waiter_max_attempts=5))
        assert event["status"] == SUCCESS
        assert event["message"] == "2 instance(s) settled"
        assert {i: v["state"] for i, v in event["instances"].items()} == {
            running[0]: "running",
            stopped[0]: "stopped",
        }
        assert api.count("DescribeInstances") == 3

    async def test_settled_fails_on_an_instance_being_terminated(self, api, client):
        ids = launch(client, 1, state="stopped")
        api.report_states(ids[0], "shutting-down")
        event = await _run(_trigger(ids, SETTLED))
        assert event["status"] == FAILED
        assert event["message"].startswith(f"{ids[0]} is shutting-down while waiting for settled")

    def test_run_sync_reaches_the_same_outcome(self, api, client):
        ids = launch(client, 1, state="terminated")
        event = _trigger(ids, "running").run_sync(sleep=lambda _: None)
        assert event["status"] == FAILED
        assert f"{ids[0]} is terminated while waiting for running" in event["message"]


class TestDescribeCallsPerPoll:
    """A poll costs one DescribeInstances per 1000 instances, however many there are."""

    @pytest.mark.parametrize("count", [3, 300])
    def test_one_call_per_poll(self, api, client, count):
        ids = launch(client, count)
        calls: list[int] = []
        trigger = _trigger(ids, "running")
        trigger.hook.conn.meta.events.register(
            "before-call.ec2.DescribeInstances", lambda **kwargs: calls.append(1)
        )
        event = trigger.poll_once()
        assert event["status"] == SUCCESS
        assert len(event["instances"]) == count
        assert len(calls) == 1

    def test_more_than_a_batch_takes_a_call_per_batch(self, api, client, monkeypatch):
        # DescribeInstances takes 1000 IDs; a batch of 2 shows the same split on 5 moto instances.
        monkeypatch.setattr(fleet_ec2, "DESCRIBE_BATCH", 2)
        ids = launch(client, 5)
        api.reset()
        event = _trigger(ids, "running").poll_once()
        assert event["status"] == SUCCESS
        assert list(event["instances"]) == ids
        assert [params["InstanceIds"] for params in api.params("DescribeInstances")] == [
            ids[:2],
            ids[2:4],
            ids[4:],
        ]
