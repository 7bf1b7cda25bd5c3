"""Clear-safe role steps, against moto: a step of a day already done boots, waits for, sends nothing.

What a person sees after the UI's Clear on a task of a succeeded role: the step reads the agent's
tags and skips (its downstream with it), or, with nobody to hand the jobs to, fails at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSkipException
from fleet_operator_testing import launch
from operators.fleet_aws import FleetStateFailure
from operators.fleet_ec2 import InstanceView
from operators.fleet_ec2_operators import FleetStartInstancesOperator
from operators.fleet_role_operators import FAIL, SEND, SKIP, WATCH, FleetRunAgentOperator, agent_hand_over
from operators.fleet_sensors import FleetInstanceStateSensor, FleetSsmAgentOnlineSensor
from operators.fleet_wait import FAILED

from instance_agent import exit_codes
from instance_agent.protocol import AgentReport

RUN_DATE = "2026-11-23"
NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def tags(run_date=RUN_DATE, state="succeeded", heartbeat=None) -> dict[str, str]:
    return AgentReport(
        role="tasks", run_date=run_date, state=state, heartbeat=heartbeat, jobs={"backoffice": 0}
    ).to_tags()


def context(ti, force=False, roles=None):
    params = {"force": force, **({"roles": roles} if roles else {})}
    return {"ti": ti, "params": params}


class TestAgentHandOver:
    @pytest.mark.parametrize(
        ("state", "report", "force", "expected"),
        [
            ("stopped", tags(), False, SKIP),
            ("running", tags(), False, SKIP),
            ("stopped", tags(), True, FAIL),
            ("running", tags(), True, SEND),
            ("stopped", tags(state="failed"), False, FAIL),
            ("stopped", {}, False, FAIL),
            ("terminated", tags(run_date="2026-11-22"), False, FAIL),
            ("running", tags(state="running", heartbeat=NOW - timedelta(seconds=30)), False, WATCH),
            ("running", tags(state="running", heartbeat=NOW - timedelta(minutes=10)), False, SEND),
            ("running", tags(run_date="2026-11-22", state="running", heartbeat=NOW), False, SEND),
            ("pending", {}, False, SEND),
            ("running", tags(state="failed"), False, SEND),
        ],
    )
    def test_the_table(self, state, report, force, expected):
        view = InstanceView("i-1", state, report)

        action, reason = agent_hand_over(view, RUN_DATE, force=force, now=NOW, heartbeat_grace=300)

        assert action == expected, reason
        assert "i-1" in reason

    def test_a_stopped_instance_names_the_cause_and_the_way_out(self):
        view = InstanceView("i-1", "stopped", tags(state="failed"))

        _, reason = agent_hand_over(view, RUN_DATE, force=False, now=NOW, heartbeat_grace=300)

        assert reason.startswith("i-1 is stopped and has not completed 2026-11-23")
        assert "its agent's last report: failed for 2026-11-23" in reason
        assert "Clear the role's task group" in reason


def run_agent(ids, **kwargs) -> FleetRunAgentOperator:
    return FleetRunAgentOperator(
        task_id="run_agent",
        instance_ids=ids,
        run_date=RUN_DATE,
        heartbeat_grace=300,
        parameters={"commands": ["agent run"]},
        deferrable=False,
        waiter_delay=0,
        waiter_max_attempts=2,
        **kwargs,
    )


class TestFleetRunAgentOperator:
    def test_a_day_already_done_sends_nothing_and_skips(self, api, client, stub, ti):
        ids = launch(client, state="stopped", tags=tags())

        with pytest.raises(AirflowSkipException, match=r"already completed 2026-11-23.*nothing sent"):
            run_agent(ids).execute(context(ti))

        assert api.count("DescribeInstances") == 1  # and the stub saw no SSM call

    def test_a_stopped_instance_not_done_fails_at_once_without_retries(self, api, client, stub, ti):
        ids = launch(client, state="stopped", tags=tags(state="failed"))

        with pytest.raises(FleetStateFailure, match=r"is stopped and has not completed 2026-11-23") as failed:
            run_agent(ids).execute(context(ti))

        assert isinstance(failed.value, AirflowFailException)  # Airflow does not retry it

    def test_an_agent_at_work_on_the_date_is_not_sent_the_jobs_again(self, api, client, stub, ti):
        heartbeat = datetime.now(UTC) - timedelta(seconds=5)
        ids = launch(client, state="running", tags=tags(state="running", heartbeat=heartbeat))

        result = run_agent(ids).execute(context(ti))

        assert result[ids[0]]["status"] == WATCH

    def test_an_agent_refusal_a_retry_would_repeat_fails_without_retries(self, ti):
        event = {
            "status": FAILED,
            "message": "command failed on i-1",
            "results": {"i-1": {"status": "Failed", "exit_code": exit_codes.EXIT_STATE_UNUSABLE}},
        }

        with pytest.raises(
            FleetStateFailure, match=r"the agent on i-1 exited 3: the state file is unreadable"
        ):
            run_agent(["i-1"]).execute_complete({"ti": ti}, event)

    def test_another_failed_command_stays_retryable(self, ti):
        event = {"status": FAILED, "message": "x", "results": {"i-1": {"status": "Failed", "exit_code": 1}}}

        with pytest.raises(Exception) as failed:
            run_agent(["i-1"]).execute_complete({"ti": ti}, event)

        assert not isinstance(failed.value, AirflowFailException)


class TestStartWhenDone:
    def test_a_role_done_for_the_date_is_not_booted(self, api, client, ti):
        ids = launch(client, state="stopped", tags=tags())
        start = FleetStartInstancesOperator(
            task_id="start", instance_ids=ids, skip_when_done_for=RUN_DATE, wait_for_completion=False
        )

        with pytest.raises(AirflowSkipException, match="nothing to boot"):
            start.execute(context(ti))

        assert api.count("StartInstances") == 0

    def test_force_boots_it_all_the_same(self, api, client, ti):
        ids = launch(client, state="stopped", tags=tags())
        start = FleetStartInstancesOperator(
            task_id="start", instance_ids=ids, skip_when_done_for=RUN_DATE, wait_for_completion=False
        )

        start.execute(context(ti, force=True))

        assert api.count("StartInstances") == 1


class TestSignerOnlyWhenSomeRoleHasWork:
    def signer(self, signer_ids, roles):
        return FleetStartInstancesOperator(
            task_id="start_signer",
            instance_ids=signer_ids,
            skip_when_done_for=RUN_DATE,
            needed_by=roles,
            wait_for_completion=False,
        )

    def test_every_role_done_the_signer_stays_stopped(self, api, client, ti):
        signer = launch(client, state="stopped")
        roles = {
            "a": launch(client, state="stopped", tags=tags()),
            "b": launch(client, state="stopped", tags=tags()),
        }

        with pytest.raises(AirflowSkipException, match=r"Every role of this run \(a, b\) already completed"):
            self.signer(signer, roles).execute(context(ti))

        assert api.count("StartInstances") == 0

    def test_one_role_with_work_boots_it(self, api, client, ti):
        signer = launch(client, state="stopped")
        roles = {"a": launch(client, state="stopped", tags=tags()), "b": launch(client, state="stopped")}

        self.signer(signer, roles).execute(context(ti))

        assert api.params("StartInstances") == [{"InstanceIds": signer}]

    def test_only_the_runs_roles_count(self, api, client, ti):
        signer = launch(client, state="stopped")
        roles = {"a": launch(client, state="stopped", tags=tags()), "b": launch(client, state="stopped")}

        with pytest.raises(AirflowSkipException):
            self.signer(signer, roles).execute(context(ti, roles=["a"]))


class TestWaitsWhenDone:
    def test_waiting_for_running_on_a_day_done_skips_at_once(self, api, client, ti):
        ids = launch(client, state="stopped", tags=tags())
        sensor = FleetInstanceStateSensor(
            task_id="wait_running",
            instance_ids=ids,
            target_state="running",
            skip_when_done_for=RUN_DATE,
            poke_interval=1,
            timeout=5,
        )

        with pytest.raises(AirflowSkipException, match="nothing to wait for"):
            sensor.execute(context(ti))

    def test_waiting_for_the_ssm_agent_on_a_day_done_skips_without_asking_ssm(self, api, client, stub, ti):
        ids = launch(client, state="stopped", tags=tags())
        sensor = FleetSsmAgentOnlineSensor(
            task_id="wait_ssm_online", instance_ids=ids, skip_when_done_for=RUN_DATE, poke_interval=1
        )

        with pytest.raises(AirflowSkipException, match="nothing to wait for"):
            sensor.execute(context(ti))
