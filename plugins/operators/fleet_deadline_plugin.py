"""Registers the daily DAG's deadline reference with Airflow (see ``fleet_deadline_alerts.py``).

A custom deadline reference is stored with its import path, and the scheduler and the API server
accept only the paths that a plugin lists in ``deadline_references``. Airflow's plugin loader
imports every file under ``plugins/`` under its bare file name (this one as
``fleet_deadline_plugin``, hence the distinctive name), while the DAG imports the reference as
``operators.fleet_deadline_alerts``: the class is imported from there, so that the path
registered is the one the DAG serialized.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from operators.fleet_deadline_alerts import FleetRunQueuedAtDeadline


class FleetDeadlinePlugin(AirflowPlugin):
    name = "fleet_deadline"
    deadline_references = [FleetRunQueuedAtDeadline]
