"""fleet_daily's alerts (the failure notifier, the "still running" deadline) and the agent's bound."""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineReference
from airflow.serialization.serialized_objects import DagSerialization
from fleet_dag.builder import agent_max_runtime, agent_spec, build_dag
from fleet_dag.config import parse_config
from fleet_dag_testing import fleet_dict
from operators.fleet_notifiers import FleetLogNotifier


class TestAlerts:
    def test_failure_callback_is_the_default_log_notifier(self, dag):
        callback = dag.on_failure_callback
        assert isinstance(callback, FleetLogNotifier)
        assert callback.message == "fleet_daily failed"

    def test_a_configured_notifier_replaces_it(self):
        data = fleet_dict(
            notifier={
                "class_path": "operators.fleet_notifiers.FleetLogNotifier",
                "kwargs": {"message": "page the on-call"},
            }
        )
        built = build_dag(parse_config(data))
        assert isinstance(built.on_failure_callback, FleetLogNotifier)
        assert built.on_failure_callback.message == "page the on-call"
        (alert,) = built.deadline
        assert alert.callback == AsyncCallback(
            "operators.fleet_deadline_alerts.fleet_deadline_alert",
            kwargs={
                "notifier": "operators.fleet_notifiers.FleetLogNotifier",
                "notifier_kwargs": {"message": "page the on-call"},
                "alert_after": 900.0,
            },
        )

    def test_a_notifier_that_cannot_be_imported_is_named(self):
        data = fleet_dict(notifier={"class_path": "fleet_alerts.PagerNotifier"})
        with pytest.raises(
            ImportError, match=r"notifier\.class_path 'fleet_alerts\.PagerNotifier' cannot be imported"
        ):
            build_dag(parse_config(data))

    def test_a_run_still_going_after_alert_after_notifies(self, dag, fleet):
        from operators.fleet_deadline_alerts import FleetRunQueuedAtDeadline

        (alert,) = dag.deadline
        assert alert.reference == FleetRunQueuedAtDeadline()
        assert alert.interval == fleet.alert_after == timedelta(minutes=15)
        # The notifier, wrapped: the wrapper calls it only for a run that has not ended.
        assert alert.callback == AsyncCallback(
            "operators.fleet_deadline_alerts.fleet_deadline_alert",
            kwargs={
                "notifier": "operators.fleet_notifiers.FleetLogNotifier",
                "notifier_kwargs": {"message": "fleet_daily still running 0:15:00 after it was queued"},
                "alert_after": 900.0,
            },
        )

    def test_the_deadline_is_not_the_queued_at_reference_a_clear_fails_on(self, dag):
        """apache/airflow#70368: Airflow recalculates, and crashes on, references of this name only."""
        (alert,) = dag.deadline
        assert alert.reference != DeadlineReference.DAGRUN_QUEUED_AT
        assert alert.reference.serialize_reference()["reference_type"] != "DagRunQueuedAtDeadline"

    def test_the_parsed_deadline_is_one_airflow_can_load_back(self, dag):
        """A custom reference is stored by import path; the components load only registered ones."""
        from airflow import plugins_manager
        from airflow.serialization.decoders import decode_deadline_reference
        from operators.fleet_deadline_alerts import FleetRunQueuedAtDeadline

        serialized = DagSerialization.serialize_dag(dag)["deadline"][0]["reference"]
        assert serialized["__class_path"] == "operators.fleet_deadline_alerts.FleetRunQueuedAtDeadline"
        assert serialized["__class_path"] in plugins_manager.get_deadline_references_plugins()
        assert isinstance(decode_deadline_reference(serialized).inner_ref, FleetRunQueuedAtDeadline)


class TestAgentMaxRuntime:
    @pytest.mark.parametrize(
        ("max_runtime", "expected"),
        [
            ("4h", timedelta(hours=4) - timedelta(minutes=5)),  # the margin is capped at 5 minutes
            ("10m", timedelta(minutes=9)),  # 10 % of a short bound
        ],
    )
    def test_the_agent_stops_its_jobs_before_the_dag_would_force_stop(self, max_runtime, expected):
        data = fleet_dict()
        data["roles"][0]["max_runtime"] = max_runtime
        config = parse_config(data)
        assert agent_max_runtime(config.roles[0]) == expected
        assert agent_spec(config, config.roles[0])["max_runtime"] == expected.total_seconds()
