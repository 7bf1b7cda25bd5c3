"""fleet_pool: keeps the warm pool's buffer of ready instances (plugins/operators/pool_*.py).

It runs every minute, and at once when the pool's API allocates or destroys an instance (the API
emits the ``fleet_pool_changed`` asset event). One run at a time: a reconcile decides from one look
at the pool, and two deciding at once would both act on it. The ``paused`` param (or pausing the
DAG) stops all scaling; a paused run still logs what it would have done.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param
from operators.pool_config import load_pool_config, pool_config_path
from operators.pool_reconcile import POOL_CHANGED, POOL_DAG_ID, FleetPoolReconcileOperator

load_pool_config()  # an invalid config is this DAG's import error, naming the field and value

with DAG(
    dag_id=POOL_DAG_ID,
    description="Keep the warm pool's buffer of ready instances; scale in and replace by name",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("* * * * *", timezone="UTC"), assets=[POOL_CHANGED]
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=5),
    params={"paused": Param(False, type="boolean", description="log the decisions, carry none out")},
    # A reconcile decides from a fresh look each time, so a retry after an AWS error is safe.
    default_args={"retries": 1, "retry_delay": timedelta(seconds=10)},
    tags=["fleet", "pool"],
    doc_md=__doc__,
):
    FleetPoolReconcileOperator(
        task_id="reconcile",
        config_path=str(pool_config_path()),
        paused="{{ params.paused }}",
        execution_timeout=timedelta(minutes=4),
    )
