"""Registers the daily DAG's deadline reference with Airflow (see ``fleet_deadline_alerts.py``).

The scheduler and the API server accept only the custom references a plugin lists. The plugin
loader imports this file as ``fleet_deadline_plugin``, while the DAG imports the reference from
``operators.fleet_deadline_alerts``: importing it from there registers the path the DAG serialized.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from operators.fleet_deadline_alerts import FleetRunQueuedAtDeadline


class FleetDeadlinePlugin(AirflowPlugin):
    name = "fleet_deadline"
    deadline_references = [FleetRunQueuedAtDeadline]
