"""``wait_turn`` in fleet_daily: where it sits, and what it does against a real Airflow database.

The DAG-level half of one-run-at-a-time on the fleet (plugins/operators/fleet_turn.py has the
protocol and its tests). The last tests run ``wait_turn`` with ``dag.test()``: the task in this
process and its trigger inline, both asking the in-process Airflow API through the Task SDK,
as a worker and the triggerer do.
"""

from __future__ import annotations

import pendulum
import pytest
from airflow.dag_processing.collection import update_dag_parsing_results_in_db
from airflow.models.dagbundle import DagBundleModel
from airflow.models.dagrun import DagRun
from airflow.sdk import DagRunState, TaskInstanceState
from airflow.serialization.serialized_objects import LazyDeserializedDAG
from airflow.utils.session import create_session
from fleet_dag.builder import build_dag
from fleet_dag.config import parse_config
from fleet_dag_testing import fleet_dict
from operators.fleet_turn_sensors import FleetWaitTurnSensor

BUNDLE = "dags-folder"


@pytest.fixture(scope="module")
def dag():
    return build_dag(parse_config(fleet_dict(poll_interval="30s")))


class TestWaitTurnInTheDag:
    def test_every_role_waits_for_the_runs_turn_before_its_first_step(self, dag):
        wait_turn = dag.get_task("wait_turn")
        skips = {task.task_id for task in dag.tasks if task.task_id.endswith(".skip_if_done")}

        assert isinstance(wait_turn, FleetWaitTurnSensor)
        # The only root: nothing of a run (not even the signer, which waits for the
        # skip_if_done tasks) touches the fleet before it.
        assert [task.task_id for task in dag.roots] == ["wait_turn"]
        assert wait_turn.upstream_task_ids == set()
        assert wait_turn.downstream_task_ids == skips

    def test_it_polls_every_poll_interval_for_a_day_and_an_api_error_is_retried(self, dag):
        wait_turn = dag.get_task("wait_turn")

        assert (wait_turn.poke_interval, wait_turn.timeout) == (30, 86400)
        assert wait_turn.retries == 2

    def test_a_sub_second_poll_interval_still_looks_once_a_second(self):
        built = build_dag(parse_config(fleet_dict(poll_interval=0.5)))
        assert built.get_task("wait_turn").poke_interval == 1


# -- with Airflow's own database and API ------------------------------------------------------------


@pytest.fixture
def turn_dag(request):
    """``wait_turn`` alone (a subset of the DAG, its own dag_id), bounded to a few seconds."""
    built = build_dag(
        parse_config(fleet_dict(poll_interval="1s")), dag_id=f"fleet_turn_{request.node.name[:40]}"
    )
    subset = built.partial_subset("wait_turn", include_downstream=False, include_upstream=False)
    subset.deadline = None  # dag.test() crashes on a DAG with a deadline (apache/airflow#73428)
    subset.get_task("wait_turn").timeout = 3
    # dag.test() runs only a DAG the database has (it writes dags/ there itself): write this one.
    with create_session() as session:
        session.merge(DagBundleModel(name=BUNDLE))
    with create_session() as session:
        update_dag_parsing_results_in_db(
            BUNDLE, None, [LazyDeserializedDAG.from_dag(subset)], {}, None, set(), session=session
        )
    return subset


def _set_run_state(dag_id: str, run_id: str, state: DagRunState) -> None:
    with create_session() as session:
        session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).update(
            {"state": state}
        )


def test_a_run_holding_the_fleet_keeps_the_next_one_waiting_until_it_ends(airflow_db, turn_dag, capsys):
    first = turn_dag.test(logical_date=pendulum.datetime(2026, 11, 20, tz="UTC"))
    assert first.state == DagRunState.SUCCESS
    # As if the first run were still on the fleet: its wait_turn succeeded, the run is going.
    _set_run_state(turn_dag.dag_id, first.run_id, DagRunState.RUNNING)
    capsys.readouterr()

    blocked = turn_dag.test(logical_date=pendulum.datetime(2026, 11, 21, tz="UTC"))

    log = capsys.readouterr().out
    (ti,) = blocked.get_task_instances()
    assert (blocked.state, ti.state) == (DagRunState.FAILED, TaskInstanceState.FAILED)
    assert f"waits for its turn on the fleet: {first.run_id} (holds the fleet" in log
    assert "did not get its turn on the fleet by " in log and f"still ahead: {first.run_id}" in log

    _set_run_state(turn_dag.dag_id, first.run_id, DagRunState.SUCCESS)
    capsys.readouterr()
    after = turn_dag.test(logical_date=pendulum.datetime(2026, 11, 22, tz="UTC"))

    assert after.state == DagRunState.SUCCESS
    assert "takes its turn on the fleet: no other run holds it or goes first" in capsys.readouterr().out
