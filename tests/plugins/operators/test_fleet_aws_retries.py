"""Which botocore retries a fleet hook gets: the operator's, else the connection's, else the fleet's.

The Amazon provider reads an AWS connection's ``config_kwargs`` only when the hook is given no
config at all; the fleet's hooks always get one (bounded standard-mode retries), so
``with_default_retries`` has to bring the connection's settings along itself.
"""

from __future__ import annotations

import json

import pytest
from botocore import UNSIGNED
from operators.fleet_aws import DEFAULT_RETRIES, make_ec2_hook, make_ssm_hook, with_default_retries
from operators.fleet_ec2_operators import FleetStartInstancesOperator, FleetStopInstancesOperator
from operators.fleet_role_operators import FleetRoleReportOperator, FleetSkipIfDoneOperator
from operators.fleet_sensors import FleetInstanceStateSensor, FleetSsmAgentOnlineSensor
from operators.fleet_ssm_operators import FleetRunCommandOperator

CONN_ID = "fleet_retries"
ONE_RETRY = {"mode": "standard", "max_attempts": 1}


@pytest.fixture
def connection(monkeypatch):
    """``set(config_kwargs)``: the AWS connection ``fleet_retries`` with that extra."""

    def set_extra(config_kwargs=None) -> None:
        extra = {"region_name": "us-east-1"}
        if config_kwargs is not None:
            extra["config_kwargs"] = config_kwargs
        connection = {"conn_type": "aws", "extra": extra}
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection))

    return set_extra


class TestPrecedence:
    def test_the_connections_retries_win_over_the_fleet_default(self, connection):
        connection({"retries": ONE_RETRY, "read_timeout": 11})
        assert with_default_retries(None, CONN_ID) == {"retries": ONE_RETRY, "read_timeout": 11}

    def test_the_connections_other_settings_keep_the_fleet_default_retries(self, connection):
        connection({"connect_timeout": 4})
        assert with_default_retries(None, CONN_ID) == {"connect_timeout": 4, "retries": DEFAULT_RETRIES}

    def test_the_operators_botocore_config_wins_over_the_connection_as_in_the_provider(self, connection):
        connection({"retries": ONE_RETRY, "read_timeout": 11})
        assert with_default_retries({"connect_timeout": 3}, CONN_ID) == {
            "connect_timeout": 3,
            "retries": DEFAULT_RETRIES,
        }
        own = {"retries": {"mode": "adaptive", "max_attempts": 2}}
        assert with_default_retries(own, CONN_ID) == own

    @pytest.mark.parametrize("config_kwargs", [None, {}, "not a mapping"])
    def test_a_connection_without_config_kwargs_gets_the_fleet_default(self, connection, config_kwargs):
        connection(config_kwargs)
        assert with_default_retries(None, CONN_ID) == {"retries": DEFAULT_RETRIES}

    def test_no_or_an_unknown_connection_gets_the_fleet_default(self):
        assert with_default_retries(None, None) == {"retries": DEFAULT_RETRIES}
        assert with_default_retries(None, "no_such_connection") == {"retries": DEFAULT_RETRIES}

    def test_unsigned_requests_are_translated_as_the_provider_does(self, connection):
        connection({"signature_version": "unsigned"})
        assert with_default_retries(None, CONN_ID)["signature_version"] is UNSIGNED

    def test_the_connections_dict_is_not_shared(self, connection):
        connection({"retries": ONE_RETRY})
        with_default_retries(None, CONN_ID)["retries"]["max_attempts"] = 5
        assert with_default_retries(None, CONN_ID)["retries"] == ONE_RETRY


class TestTheClientGetsIt:
    """botocore's ``max_attempts`` counts retries; the client holds the total (``total_max_attempts``)."""

    @pytest.mark.parametrize("make_hook", [make_ec2_hook, make_ssm_hook])
    def test_trigger_hooks(self, connection, make_hook):
        connection({"retries": ONE_RETRY, "read_timeout": 11})
        config = make_hook(CONN_ID, "us-east-1").conn.meta.config
        assert (config.retries["total_max_attempts"], config.read_timeout) == (2, 11)

    def test_trigger_hooks_without_connection_settings_keep_the_fleet_default(self, connection):
        connection()
        assert make_ec2_hook(CONN_ID, "us-east-1").conn.meta.config.retries["total_max_attempts"] == 9

    @pytest.mark.parametrize(
        "operator",
        [
            lambda: FleetStartInstancesOperator(task_id="t", instance_ids=["i-1"], aws_conn_id=CONN_ID),
            lambda: FleetStopInstancesOperator(task_id="t", instance_ids=["i-1"], aws_conn_id=CONN_ID),
            lambda: FleetInstanceStateSensor(
                task_id="t", instance_ids=["i-1"], target_state="running", aws_conn_id=CONN_ID
            ),
            lambda: FleetSkipIfDoneOperator(
                task_id="t", role="r", instance_ids=["i-1"], run_date="2026-11-23", aws_conn_id=CONN_ID
            ),
            lambda: FleetRoleReportOperator(
                task_id="t", role="r", instances={}, run_date="2026-11-23", job_names=[], aws_conn_id=CONN_ID
            ),
            lambda: FleetRunCommandOperator(
                task_id="t", instance_ids=["i-1"], parameters={"commands": ["true"]}, aws_conn_id=CONN_ID
            ),
            lambda: FleetSsmAgentOnlineSensor(task_id="t", instance_ids=["i-1"], aws_conn_id=CONN_ID),
        ],
        ids=["start", "stop", "state_sensor", "skip_if_done", "report", "run_command", "ssm_online"],
    )
    def test_every_operator_and_sensor(self, connection, operator):
        connection({"retries": ONE_RETRY})
        assert operator().hook.conn.meta.config.retries["total_max_attempts"] == 2
