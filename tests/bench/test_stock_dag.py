"""The stock-operator DAG: the same flow, the provider's operators, their defaults unless shortened."""

from __future__ import annotations

import pytest
from airflow.providers.amazon.aws.operators.ec2 import EC2StartInstanceOperator, EC2StopInstanceOperator
from airflow.providers.amazon.aws.operators.ssm import SsmRunCommandOperator
from airflow.providers.amazon.aws.sensors.ec2 import EC2InstanceStateSensor
from fleet_dag.config import parse_config
from fleet_testing import role_named

from bench.fleets import fleet_config
from bench.stock_dag import StockIntervals, build_stock_dag


@pytest.fixture
def config():
    return parse_config(fleet_config(2))


def test_one_start_one_command_and_one_sensor_per_role_between_the_signers_start_and_stop(config):
    dag = build_stock_dag(config)

    assert sorted(dag.task_ids) == sorted(
        ["start_signer", "stop_signer"]
        + [f"{role}.{step}" for role in ("w001", "w002") for step in ("start", "run_agent", "wait_stopped")]
    )
    assert dag.get_task("w001.start").upstream_task_ids == {"start_signer"}
    assert dag.get_task("w001.run_agent").upstream_task_ids == {"w001.start"}
    assert dag.get_task("stop_signer").upstream_task_ids == {"w001.wait_stopped", "w002.wait_stopped"}
    run = dag.get_task("w002.run_agent")
    assert isinstance(run, SsmRunCommandOperator)
    assert run.run_command_kwargs["InstanceIds"] == [role_named(config, "w002").instance]
    assert "--role w002" in run.run_command_kwargs["Parameters"]["commands"][0]


def test_defaults_are_the_providers(config):
    dag = build_stock_dag(config)

    start, stop = dag.get_task("w001.start"), dag.get_task("stop_signer")
    sensor, run = dag.get_task("w001.wait_stopped"), dag.get_task("w001.run_agent")
    assert isinstance(start, EC2StartInstanceOperator) and start.check_interval == 15
    assert isinstance(stop, EC2StopInstanceOperator) and stop.check_interval == 15
    assert isinstance(sensor, EC2InstanceStateSensor)
    assert (sensor.poke_interval, sensor.mode, sensor.deferrable) == (60, "poke", False)
    assert (run.waiter_delay, run.deferrable) == (120, False)
    assert StockIntervals().is_default


def test_shortened_intervals_apply_to_all_three(config):
    dag = build_stock_dag(config, dag_id="stock_5s", intervals=StockIntervals.every(5))

    assert dag.dag_id == "stock_5s"
    assert dag.get_task("w001.start").check_interval == 5
    assert dag.get_task("w001.wait_stopped").poke_interval == 5
    assert dag.get_task("w001.run_agent").waiter_delay == 5
    assert "shortened" in StockIntervals.every(5).describe()
    with pytest.raises(ValueError, match="must be positive"):
        StockIntervals.every(0)
