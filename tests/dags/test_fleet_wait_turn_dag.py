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
from airflow.sdk import DAG, DagRunState, TaskInstanceState
from airflow.serialization.serialized_objects import DagSerialization, LazyDeserializedDAG
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
        # ... and the signer's stop, its teardown (only a run that had its turn stops the signer).
        assert wait_turn.downstream_task_ids == skips | {"stop_signer"}

    def test_it_is_a_setup_whose_teardown_is_the_signers_stop(self, dag):
        wait_turn, stop = dag.get_task("wait_turn"), dag.get_task("stop_signer")

        assert wait_turn.is_setup and stop.is_teardown
        assert "stop_signer" in wait_turn.downstream_task_ids

    @pytest.mark.parametrize(
        "step", ["skip_if_done", "start", "wait_running", "wait_ssm_online", "run_agent", "wait_stopped"]
    )
    def test_a_clear_of_any_role_step_before_the_report_clears_wait_turn_too(self, dag, step):
        # What the API server's Clear (clearTaskInstances) adds to the tasks asked for: the
        # relevant setups and their teardowns, computed on the serialized DAG it holds.
        served = DagSerialization.from_dict(DagSerialization.to_dict(dag))
        task_id = f"tasks.{step}"

        cleared = set(
            served.partial_subset(task_id, include_downstream=False, include_upstream=False).task_dict
        )

        assert {"wait_turn", "stop_signer", task_id} <= cleared

    @pytest.mark.parametrize("task_id", ["tasks.report", "start_signer", "stop_signer"])
    def test_the_steps_a_clear_can_reach_without_wait_turn_read_only_or_guard_themselves(self, dag, task_id):
        served = DagSerialization.from_dict(DagSerialization.to_dict(dag))

        cleared = set(
            served.partial_subset(task_id, include_downstream=False, include_upstream=False).task_dict
        )

        assert "wait_turn" not in cleared
        # operators.fleet_turn_sensors: the signer's pair checks the turn itself; a report only reads.
        assert getattr(dag.get_task(task_id), "turn_task_id", None) == (
            None if task_id.endswith("report") else "wait_turn"
        )

    def test_every_step_that_acts_on_a_vm_guards_a_cleared_runs_turn_and_no_other(self, dag):
        acting = {"start", "run_agent", "wait_stopped", "start_signer", "stop_signer"}

        guarded = {
            task.task_id.rpartition(".")[2]
            for task in dag.tasks
            if getattr(task, "turn_task_id", None) == "wait_turn"
        }

        assert guarded == acting

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
    """The DAG's ``wait_turn`` alone in a DAG of its own, bounded to a few seconds.

    Not a ``partial_subset``: that brings the setup's teardown (``stop_signer``) along. Nor the
    DAG's deadline: ``dag.test()`` crashes on a DAG with one (apache/airflow#73428).
    """
    built = build_dag(parse_config(fleet_dict(poll_interval="1s")))
    with DAG(
        dag_id=f"fleet_turn_{request.node.name[:40]}",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    ) as subset:
        FleetWaitTurnSensor(
            task_id="wait_turn", poke_interval=built.get_task("wait_turn").poke_interval, timeout=3
        )
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
