"""Fixtures of the end-to-end tests: the real fleet_daily DAG against the fleet simulator
(defined in ``tests/dag_on_sim.py``, which tests/dags uses too)."""

# pytest finds fixtures by their names in a conftest, so this import is the point.
from dag_on_sim import notified, run_fleet  # ruff: ignore[unused-import]
