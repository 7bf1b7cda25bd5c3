"""Tests for operators.fleet_ec2_operators: a start over ordered candidates, with fallback."""

from __future__ import annotations

import pytest
from fleet_operator_testing import launch, messages, pushed_xcoms, start_operator
from fleet_testing import states
from operators.fleet_aws import FleetError


class TestFleetStartInstancesOperatorCandidates:
    def test_a_running_candidate_is_used(self, api, client, context, task_log):
        stopped = launch(client, 1, state="stopped")
        running = launch(client, 1)
        api.report_states(running[0], "pending")
        api.reset()
        assert start_operator(candidates=[*stopped, *running]).execute(context) == running
        assert api.count("StartInstances") == 0
        assert pushed_xcoms(context) == {"started": [], "already_running": running}
        assert f"Candidate {running[0]} is already pending: using it" in messages(task_log)
        assert api.count("DescribeInstances") == 2  # the read, then one poll for running

    def test_the_first_stopped_candidate_is_started(self, api, client, context):
        ids = launch(client, 2, state="stopped")
        assert start_operator(candidates=ids).execute(context) == [ids[0]]
        assert api.params("StartInstances") == [{"InstanceIds": [ids[0]]}]
        assert states(client, ids) == {ids[0]: "running", ids[1]: "stopped"}

    def test_capacity_error_moves_to_the_next_candidate(self, api, client, context, task_log):
        ids = launch(client, 2, state="stopped")
        api.fail("StartInstances", "InsufficientInstanceCapacity", "no capacity in us-east-1a")
        api.reset()

        assert start_operator(candidates=ids).execute(context) == [ids[1]]

        assert api.params("StartInstances") == [{"InstanceIds": [ids[0]]}, {"InstanceIds": [ids[1]]}]
        assert pushed_xcoms(context) == {"started": [ids[1]], "already_running": []}
        assert states(client, ids) == {ids[0]: "stopped", ids[1]: "running"}
        assert (
            f"Candidate {ids[0]} has no capacity (InsufficientInstanceCapacity); trying the next"
            in messages(task_log)
        )

    def test_all_candidates_failing_lists_each_with_its_error(self, api, client, context):
        stopped = launch(client, 2, state="stopped")
        terminated = launch(client, 1, state="terminated")
        api.fail("StartInstances", "InsufficientInstanceCapacity", "no capacity in 1a")
        api.fail("StartInstances", "InsufficientHostCapacity", "no host in 1b")
        candidates = [stopped[0], terminated[0], stopped[1]]

        with pytest.raises(FleetError) as failure:
            start_operator(candidates=candidates).execute(context)

        message = str(failure.value)
        assert message.startswith("No candidate could be started: ")
        assert f"{stopped[0]}: InsufficientInstanceCapacity: no capacity in 1a" in message
        assert f"{terminated[0]}: terminated" in message
        assert f"{stopped[1]}: InsufficientHostCapacity: no host in 1b" in message
        assert api.count("StartInstances") == 2

    def test_a_non_capacity_error_stops_the_search(self, api, client, context):
        ids = launch(client, 2, state="stopped")
        api.fail("StartInstances", "UnauthorizedOperation", "denied")
        with pytest.raises(FleetError, match=f"Start of candidate {ids[0]} failed: UnauthorizedOperation"):
            start_operator(candidates=ids).execute(context)
        assert api.count("StartInstances") == 1

    def test_stopping_candidates_are_waited_out_so_order_holds(self, api, client, context):
        ids = launch(client, 2, state="stopped")
        api.report_states(ids[0], "stopping")
        api.reset()
        assert start_operator(candidates=ids).execute(context) == [ids[0]]
        assert api.params("StartInstances") == [{"InstanceIds": [ids[0]]}]

    def test_race_on_a_candidate_reads_again(self, api, client, context):
        ids = launch(client, 1, state="stopped")
        api.fail("StartInstances", "IncorrectInstanceState", "busy")
        assert start_operator(candidates=ids).execute(context) == ids
        assert api.count("StartInstances") == 2

    def test_unknown_candidate_fails_naming_it(self, api, client, context):
        ids = launch(client, 1, state="stopped")
        with pytest.raises(FleetError, match="i-0000000000000dead"):
            start_operator(candidates=[*ids, "i-0000000000000dead"]).execute(context)
