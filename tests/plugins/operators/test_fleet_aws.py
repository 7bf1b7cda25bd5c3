"""Tests for operators.fleet_aws: hooks and retries, ID lists, the batched DescribeInstances."""

from __future__ import annotations

import boto3
import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from fleet_operator_testing import ec2_client, launch, set_tags
from operators import fleet_ec2
from operators.fleet_aws import (
    DEFAULT_RETRIES,
    FleetError,
    FleetStateFailure,
    chunked,
    error_code,
    error_message,
    make_ec2_hook,
    make_ssm_hook,
    normalize_instance_ids,
    with_default_retries,
)
from operators.fleet_ec2 import InstanceView, describe_instances

from instance_agent.protocol import TAG_PROGRESS, TAG_RUN_DATE, TAG_STATE


def _instance(instance_id: str, state: str = "running") -> dict:
    return {"InstanceId": instance_id, "State": {"Name": state, "Code": 16}}


class TestWithDefaultRetries:
    def test_adds_bounded_standard_retries(self):
        assert with_default_retries(None) == {"retries": {"mode": "standard", "max_attempts": 8}}

    def test_keeps_the_users_other_settings_and_their_own_retries(self):
        config = {"connect_timeout": 5, "retries": {"mode": "adaptive", "max_attempts": 3}}
        result = with_default_retries(config)
        assert result == config
        assert result is not config

    def test_does_not_change_the_users_dict(self):
        config = {"read_timeout": 9}
        with_default_retries(config)
        assert config == {"read_timeout": 9}

    def test_each_call_gets_its_own_retries_dict(self):
        with_default_retries(None)["retries"]["max_attempts"] = 1
        assert DEFAULT_RETRIES["max_attempts"] == 8


class TestMakeHooks:
    def test_ec2_hook_is_a_client_with_standard_retries(self):
        hook = make_ec2_hook(aws_conn_id="aws_default", region_name="eu-west-1")
        client = hook.conn
        assert client.meta.service_model.service_name == "ec2"
        assert client.meta.region_name == "eu-west-1"
        assert client.meta.config.retries["mode"] == "standard"
        # botocore's max_attempts counts retries; the client holds the total.
        assert client.meta.config.retries["total_max_attempts"] == 9

    def test_users_botocore_config_is_kept(self):
        hook = make_ec2_hook("aws_default", None, botocore_config={"read_timeout": 7})
        assert hook.conn.meta.config.read_timeout == 7
        assert hook.conn.meta.config.retries["mode"] == "standard"

    def test_ssm_hook_has_standard_retries(self):
        hook = make_ssm_hook("aws_default", "us-east-1")
        assert hook.conn.meta.config.retries["mode"] == "standard"


class TestErrors:
    def test_state_failure_fails_without_retries_and_is_a_fleet_error(self):
        error = FleetStateFailure("i-1 is terminated")
        assert isinstance(error, FleetError)
        assert isinstance(error, AirflowFailException)
        assert isinstance(FleetError("x"), AirflowException)
        assert not isinstance(FleetError("x"), AirflowFailException)

    def test_error_code_and_message_of_a_client_error(self):
        error = ClientError({"Error": {"Code": "Throttling", "Message": "slow down"}}, "StartInstances")
        assert error_code(error) == "Throttling"
        assert error_message(error) == "slow down"

    def test_error_without_details(self):
        error = ClientError({}, "StartInstances")
        assert error_code(error) == ""
        assert "StartInstances" in error_message(error)


class TestNormalizeInstanceIds:
    def test_list_is_deduplicated_in_order(self):
        assert normalize_instance_ids(["i-2", "i-1", "i-2"]) == ["i-2", "i-1"]

    def test_comma_separated_string(self):
        assert normalize_instance_ids(" i-1, i-2 ,i-3") == ["i-1", "i-2", "i-3"]

    def test_single_id_string(self):
        assert normalize_instance_ids("i-0abc") == ["i-0abc"]

    @pytest.mark.parametrize("text", ["['i-1', 'i-2']", '["i-1", "i-2"]', " ['i-1', 'i-2', 'i-1'] "])
    def test_a_list_rendered_to_text_by_a_template(self, text):
        assert normalize_instance_ids(text) == ["i-1", "i-2"]

    def test_list_text_of_something_else(self):
        with pytest.raises(ValueError, match="not a list of EC2 instance IDs"):
            normalize_instance_ids("[{'i-1'}][0]")

    def test_list_text_that_is_not_a_literal(self):
        with pytest.raises(ValueError, match=r"candidates is not a list of EC2 instance IDs: '\[i-1'"):
            normalize_instance_ids("[i-1", "candidates")

    def test_empty(self):
        with pytest.raises(ValueError, match="instance_ids is empty"):
            normalize_instance_ids([])

    def test_bad_values_are_named(self):
        with pytest.raises(
            ValueError, match=r"candidates holds values that are not EC2 instance IDs: \['vm-1', 3\]"
        ):
            normalize_instance_ids(["i-1", "vm-1", 3], "candidates")

    def test_trailing_comma_is_a_bad_value(self):
        with pytest.raises(ValueError, match=r"not EC2 instance IDs: \[''\]"):
            normalize_instance_ids("i-1,")


class TestChunked:
    def test_batches_keep_order_and_cover_everything(self):
        ids = [f"i-{n}" for n in range(2500)]
        batches = list(chunked(ids, 1000))
        assert [len(batch) for batch in batches] == [1000, 1000, 500]
        assert [i for batch in batches for i in batch] == ids


class TestInstanceView:
    def test_from_api(self):
        view = InstanceView.from_api(
            {
                "InstanceId": "i-1",
                "State": {"Name": "stopped"},
                "Tags": [{"Key": "Name", "Value": "worker"}, {"Key": TAG_STATE, "Value": "succeeded"}],
                "StateReason": {"Code": "Client.UserInitiatedShutdown", "Message": "user shutdown"},
            }
        )
        assert view == InstanceView(
            "i-1", "stopped", {"Name": "worker", TAG_STATE: "succeeded"}, "user shutdown"
        )
        assert view.to_xcom() == {"state": "stopped", "tags": {"Name": "worker", TAG_STATE: "succeeded"}}
        assert view.report.state == "succeeded"

    def test_no_agent_tags_no_report(self):
        view = InstanceView.from_api({"InstanceId": "i-1", "State": {"Name": "running"}})
        assert view.report is None
        assert view.state_reason is None


class TestDescribeInstances:
    def test_reads_states_and_tags_in_one_call(self, api):
        client = ec2_client()
        running = launch(client, 2)
        stopped = launch(client, 1, state="stopped")
        set_tags(client, running[0], {TAG_RUN_DATE: "2026-11-23", TAG_PROGRESS: "1/4"})
        api.reset()

        views = describe_instances(client, [*running, *stopped])

        assert api.count("DescribeInstances") == 1
        assert api.params("DescribeInstances") == [{"InstanceIds": [*running, *stopped]}]
        assert {i: v.state for i, v in views.items()} == {
            running[0]: "running",
            running[1]: "running",
            stopped[0]: "stopped",
        }
        assert views[running[0]].tags == {TAG_RUN_DATE: "2026-11-23", TAG_PROGRESS: "1/4"}

    def test_unknown_id_is_named(self, api):
        client = ec2_client()
        known = launch(client, 1)
        with pytest.raises(FleetError, match="i-0123456789abcdef0"):
            describe_instances(client, [*known, "i-0123456789abcdef0"])

    def test_more_ids_than_a_batch_take_a_call_per_batch(self, api, monkeypatch):
        assert fleet_ec2.DESCRIBE_BATCH == 1000  # DescribeInstances refuses more IDs per request
        monkeypatch.setattr(fleet_ec2, "DESCRIBE_BATCH", 2)
        client = ec2_client()
        ids = launch(client, 3)
        api.reset()
        views = describe_instances(client, ids)
        assert [params["InstanceIds"] for params in api.params("DescribeInstances")] == [ids[:2], ids[2:]]
        assert list(views) == ids

    def test_follows_pages(self):
        client = boto3.client("ec2", region_name="us-east-1")
        with Stubber(client) as stub:
            stub.add_response(
                "describe_instances",
                {"Reservations": [{"Instances": [_instance("i-1")]}], "NextToken": "page2"},
                {"InstanceIds": ["i-1", "i-2"]},
            )
            stub.add_response(
                "describe_instances",
                {"Reservations": [{"Instances": [_instance("i-2", "stopped")]}]},
                {"InstanceIds": ["i-1", "i-2"], "NextToken": "page2"},
            )
            views = describe_instances(client, ["i-1", "i-2"])
        assert {i: v.state for i, v in views.items()} == {"i-1": "running", "i-2": "stopped"}

    def test_an_id_missing_from_the_answer_is_named(self):
        client = boto3.client("ec2", region_name="us-east-1")
        with Stubber(client) as stub:
            stub.add_response(
                "describe_instances",
                {"Reservations": [{"Instances": [_instance("i-1")]}]},
                {"InstanceIds": ["i-1", "i-2"]},
            )
            with pytest.raises(FleetError, match=r"EC2 instance\(s\) i-2 not found"):
                describe_instances(client, ["i-1", "i-2"])

    def test_other_errors_pass_through(self):
        client = boto3.client("ec2", region_name="us-east-1")
        with Stubber(client) as stub:
            stub.add_client_error("describe_instances", "UnauthorizedOperation", "no")
            with pytest.raises(ClientError, match="UnauthorizedOperation"):
                describe_instances(client, ["i-1"])
