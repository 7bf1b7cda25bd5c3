"""The fleet_pool DAG as the DAG processor parses it, and its reconcile task on moto."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from moto import mock_aws
from operators.pool_config import POOL_CONFIG_ENV_VAR
from operators.pool_reconcile import POOL_CHANGED, FleetPoolReconcileOperator
from pool_testing import GROUP, TABLE, CodeServers, group, make_group

DAGS = Path(__file__).resolve().parents[2] / "dags"


def parse(monkeypatch, config: Path | None = None) -> DagBag:
    if config:
        monkeypatch.setenv(POOL_CONFIG_ENV_VAR, str(config))
    else:
        monkeypatch.delenv(POOL_CONFIG_ENV_VAR, raising=False)
    return DagBag(dag_folder=str(DAGS / "fleet_pool.py"), safe_mode=True)


def test_every_minute_and_on_each_allocation(monkeypatch):
    bag = parse(monkeypatch)
    assert not bag.import_errors
    dag = bag.dags["fleet_pool"]
    timetable = dag.timetable
    assert type(timetable).__name__ == "AssetOrTimeSchedule"
    assert timetable.timetable.expression == "* * * * *"
    assert [asset.uri for asset in timetable.asset_condition.objects] == [POOL_CHANGED.uri]
    assert dag.max_active_runs == 1 and dag.params["paused"] is False
    (task,) = dag.tasks
    assert isinstance(task, FleetPoolReconcileOperator) and task.paused == "{{ params.paused }}"


def test_a_bad_config_is_the_dags_import_error_naming_the_field(monkeypatch, tmp_path):
    bad = tmp_path / "pool.yaml"
    bad.write_text("buffer: -3\n")
    bag = parse(monkeypatch, bad)
    (error,) = bag.import_errors.values()
    assert "invalid pool config" in error and "buffer" in error and "-3" in error
    assert "fleet_pool" not in bag.dags


@pytest.fixture
def world(monkeypatch, tmp_path):
    servers = CodeServers()
    config = tmp_path / "pool.yaml"
    config.write_text(f"group: {GROUP}\nclaim_table: {TABLE}\nreadiness: {{url: '{servers.url}'}}\n")
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    with mock_aws():
        make_group(desired=0)
        yield config
    servers.stop()


def test_the_task_reconciles_and_a_paused_one_only_tells(world):
    paused = FleetPoolReconcileOperator(task_id="reconcile", config_path=str(world), paused="True")
    result = paused.execute({})
    assert result["paused"] is True and result["desired"] == 5 and group()["DesiredCapacity"] == 0
    assert result["decisions"][-1].startswith("Scaling to: 5")

    running = FleetPoolReconcileOperator(task_id="reconcile", config_path=str(world), paused="False")
    assert running.execute({})["desired"] == 5
    assert group()["DesiredCapacity"] == 5
