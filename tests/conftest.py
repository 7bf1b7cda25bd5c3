"""Test-wide setup: an isolated Airflow home, no real AWS, and the metadata database fixture.

The environment must be set before anything imports airflow, which is why it happens at import
time of this module (pytest imports conftest.py first).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="fleet-airflow-home-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        # Never reach real AWS from a test: fake credentials and a fixed region.
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        # An Airflow connection from the environment, so hooks need no metadata database.
        "AIRFLOW_CONN_AWS_DEFAULT": '{"conn_type": "aws", "extra": {"region_name": "us-east-1"}}',
    }
)
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The metadata database dag.test() needs: `airflow db migrate` once per session."""
    from airflow.utils.db import initdb

    initdb()
