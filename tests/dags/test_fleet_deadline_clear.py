"""A Clear of a fleet_daily run whose deadline is still ahead, against Airflow's own code.

The UI's Clear button (``POST .../clearTaskInstances``) ends in ``clear_task_instances``, which
re-queues the run and recalculates its queued-at deadlines. These tests write the DAG to the
metadata database as the DAG processor does, create a run as the API server does (which creates
its deadline), and clear a role's tasks while the deadline is still ahead: the case that failed
(apache/airflow#70368). tests/e2e/test_airflow_clear.py does the same through the real REST API.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
import pytest
from airflow.dag_processing.collection import update_dag_parsing_results_in_db
from airflow.models.dagbag import DBDagBag
from airflow.models.dagbundle import DagBundleModel
from airflow.models.deadline import Deadline
from airflow.models.deadline_alert import DeadlineAlert as DeadlineAlertModel
from airflow.models.taskinstance import clear_task_instances
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference
from airflow.serialization.definitions.deadline import SerializedReferenceModels
from airflow.serialization.serialized_objects import LazyDeserializedDAG
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState, TaskInstanceState
from airflow.utils.types import DagRunTriggeredByType, DagRunType
from fleet_dag.builder import build_dag
from fleet_dag.config import parse_config
from fleet_dag_testing import fleet_dict

BUNDLE = "dags-folder"
ALERT_AFTER = timedelta(minutes=15)
DAY = pendulum.datetime(2026, 11, 20, tz="UTC")


def write_and_run(dag):
    """Write ``dag`` to the database, create a queued run of it; the run, in an open session."""
    with create_session() as session:
        session.merge(DagBundleModel(name=BUNDLE))  # committed first: the DAG's row refers to it
    with create_session() as session:
        update_dag_parsing_results_in_db(
            BUNDLE, None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
        )
    session = create_session().__enter__()
    scheduler_dag = DBDagBag().get_latest_version_of_dag(dag.dag_id, session=session)
    run = scheduler_dag.create_dagrun(
        run_id=f"manual__{dag.dag_id}",
        logical_date=DAY,
        data_interval=(DAY, DAY),
        run_after=DAY,
        run_type=DagRunType.MANUAL,
        state=DagRunState.QUEUED,
        triggered_by=DagRunTriggeredByType.TEST,
        session=session,
    )
    session.flush()
    return run, session


def fail_and_clear_the_role(run, session) -> None:
    """The run failed in its role's report; clear that role's group, as the UI's Clear does."""
    tis = run.get_task_instances(session=session)
    for ti in tis:
        ti.state = TaskInstanceState.FAILED if ti.task_id == "tasks.report" else TaskInstanceState.SUCCESS
    run.state = DagRunState.FAILED
    session.flush()
    clear_task_instances([ti for ti in tis if ti.task_id.startswith("tasks.")], session)
    session.flush()


@pytest.fixture
def fleet_dag(request):
    config = parse_config(fleet_dict(alert_after="15m"))
    return build_dag(config, dag_id=f"fleet_daily_clear_{request.node.name[:40]}")


def test_a_clear_while_the_deadline_is_ahead_is_accepted_and_the_deadline_kept(airflow_db, fleet_dag):
    run, session = write_and_run(fleet_dag)
    try:
        (deadline,) = session.query(Deadline).filter(Deadline.dagrun_id == run.id).all()
        first_queued = run.queued_at
        assert deadline.deadline_time == first_queued + ALERT_AFTER
        assert not deadline.missed

        fail_and_clear_the_role(run, session)

        assert run.state == DagRunState.QUEUED and run.queued_at > first_queued
        # Not moved (this reference is not recalculated): the callback waits from the new
        # queued_at itself (test_fleet_deadline_alerts.py).
        assert deadline.deadline_time == first_queued + ALERT_AFTER
        # A run that succeeds before its deadline still has the deadline pruned by Airflow (it
        # prunes the deadlines of the reference types it lists, custom references among them).
        alert = session.get(DeadlineAlertModel, deadline.deadline_alert_id)
        assert alert.reference_class in SerializedReferenceModels.TYPES.DAGRUN
    finally:
        session.rollback()
        session.close()


def test_airflow_still_fails_a_clear_on_a_queued_at_deadline(airflow_db, fleet_dag):
    """Why fleet_daily has its own reference. When this fails, Airflow has the fix: go back.

    That is: use ``DeadlineReference.DAGRUN_QUEUED_AT`` in ``fleet_dag/builder.py``'s
    ``_deadline`` again, and drop ``FleetRunQueuedAtDeadline`` and ``fleet_deadline_plugin.py``
    (keep ``fleet_deadline_alert``, which keeps ended runs silent), then delete this test.
    """
    (ours,) = fleet_dag.deadline
    fleet_dag.deadline = [
        DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=ours.interval, callback=ours.callback
        )
    ]
    run, session = write_and_run(fleet_dag)
    try:
        assert session.query(Deadline).filter(Deadline.dagrun_id == run.id).count() == 1
        try:
            fail_and_clear_the_role(run, session)
        except TypeError as error:
            assert "unsupported type for timedelta seconds component: dict" in str(error)
        else:
            pytest.fail(
                "apache/airflow#70368 is fixed in this Airflow: a Clear works with "
                "DeadlineReference.DAGRUN_QUEUED_AT; go back to it (this test's docstring says how)"
            )
    finally:
        session.rollback()
        session.close()
