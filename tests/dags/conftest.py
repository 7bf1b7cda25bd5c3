"""Fixtures of the DAG tests (helpers they share live in fleet_dag_testing.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The metadata database dag.test() needs: `airflow db migrate` once per session."""
    from airflow.utils.db import initdb

    initdb()
