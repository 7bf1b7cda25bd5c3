"""Fixtures of the DAG tests: ``dags/`` parsed once per module as the DAG processor parses it."""

from __future__ import annotations

import pytest
from airflow.dag_processing.dagbag import DagBag

# The DAG on the simulator (tests/dag_on_sim.py), for test_fleet_daily_run.py; pytest finds fixtures by
# their names in a conftest, so these imports are the point.
from dag_on_sim import notified, run_fleet  # ruff: ignore[unused-import]
from fleet_dag.config import CONFIG_ENV_VAR, DEFAULT_CONFIG_PATH, load_config
from fleet_dag_testing import DAGS_FOLDER, ParseGuard


@pytest.fixture(scope="module")
def parsed():
    """dags/ parsed as the DAG processor does (safe mode, .airflowignore), under the guard."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
        guard = ParseGuard().install(monkeypatch)
        bag = DagBag(dag_folder=DAGS_FOLDER, safe_mode=True)
    return bag, guard


@pytest.fixture(scope="module")
def dag(parsed):
    return parsed[0].dags["fleet_daily"]


@pytest.fixture(scope="module")
def fleet():
    return load_config(DEFAULT_CONFIG_PATH)
