"""FleetLogNotifier: the daily DAG's default alert, as a failure callback and as a deadline callback."""

from __future__ import annotations

from airflow.sdk import DAG
from operators.fleet_notifiers import FleetLogNotifier


def errors(events) -> list[str]:
    return [str(e["event"]) for e in events if e["log_level"] == "error"]


class TestFleetLogNotifier:
    def test_notify_logs_the_message_as_an_error(self, task_log):
        FleetLogNotifier(message="fleet_daily failed").notify({})
        assert errors(task_log) == ["FLEET ALERT: fleet_daily failed"]

    def test_as_a_failure_callback_it_renders_the_message_with_the_context(self, task_log):
        notifier = FleetLogNotifier(message="{{ dag.dag_id }} failed in {{ run_id }}")
        notifier({"dag": DAG(dag_id="fleet_daily", schedule=None), "run_id": "scheduled__2026-11-23"})
        assert errors(task_log) == ["FLEET ALERT: fleet_daily failed in scheduled__2026-11-23"]

    def test_default_message_names_the_dag(self, task_log):
        FleetLogNotifier()({"dag": DAG(dag_id="fleet_daily", schedule=None)})
        assert errors(task_log) == ["FLEET ALERT: Fleet alert for fleet_daily"]

    async def test_as_a_deadline_callback_it_is_awaited_in_the_triggerer(self, task_log):
        # The triggerer builds the notifier from the DeadlineAlert's kwargs plus a context and awaits it.
        await FleetLogNotifier(message="fleet_daily still running", context={"dag_run": None})
        assert errors(task_log) == ["FLEET ALERT: fleet_daily still running"]
