"""The run date of a manual run at the edges of a day, with the trigger's clock injected.

A person who presses the UI's Trigger button makes a run with no logical date: the REST API
(``TriggerDAGRunPostBody``) sets ``run_after`` from its clock, and the DAG's run date is that
moment's day in the fleet's timezone, not in UTC and not on the VM's clock. These tests build the
run's context exactly as the API does, at chosen moments.
"""

from __future__ import annotations

from types import SimpleNamespace

import pendulum
import pytest
from airflow.api_fastapi.core_api.datamodels.dag_run import TriggerDAGRunPostBody
from airflow.serialization.serialized_objects import DagSerialization
from fleet_dag.builder import RUN_DATE, build_dag, run_date_for
from fleet_dag.config import parse_config
from fleet_dag_testing import fleet_dict


def ui_trigger(dag, now: pendulum.DateTime) -> SimpleNamespace:
    """The DAG run the REST API makes for a trigger with no logical date at ``now``."""
    serialized = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    body = TriggerDAGRunPostBody.model_validate({"logical_date": None, "run_after": now})
    context = body.validate_context(serialized)
    return SimpleNamespace(logical_date=context["logical_date"], run_after=context["run_after"])


def rendered_run_date(dag, dag_run) -> str:
    """The run date as the fleet's tasks render it (the DAG's ``fleet_run_date`` macro)."""
    template = dag.get_template_env().from_string(RUN_DATE)
    return template.render(dag_run=dag_run)


@pytest.mark.parametrize(
    ("timezone", "local", "utc_day", "expected"),
    [
        # Tokyo is UTC+9: 00:30 there is 15:30 UTC on the day before.
        ("Asia/Tokyo", pendulum.datetime(2026, 12, 2, 0, 30, tz="Asia/Tokyo"), "2026-12-01", "2026-12-02"),
        # New York is UTC-5 in December: 23:30 there is 04:30 UTC on the day after.
        (
            "America/New_York",
            pendulum.datetime(2026, 12, 2, 23, 30, tz="America/New_York"),
            "2026-12-03",
            "2026-12-02",
        ),
        # UTC itself, half a minute either side of midnight.
        ("UTC", pendulum.datetime(2026, 12, 2, 0, 0, 30, tz="UTC"), "2026-12-02", "2026-12-02"),
        ("UTC", pendulum.datetime(2026, 12, 2, 23, 59, 30, tz="UTC"), "2026-12-02", "2026-12-02"),
    ],
)
def test_a_manual_run_is_for_the_day_it_is_made_in_the_fleets_timezone(timezone, local, utc_day, expected):
    dag = build_dag(parse_config(fleet_dict(timezone=timezone)))
    now = local.in_timezone("UTC")
    assert now.to_date_string() == utc_day  # the edge the case is about

    dag_run = ui_trigger(dag, now)

    assert dag_run.logical_date is None
    assert dag_run.run_after == now
    assert run_date_for(dag_run, timezone) == expected
    assert rendered_run_date(dag, dag_run) == expected
