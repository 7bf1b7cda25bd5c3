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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fake-now",
        metavar="ISO",
        help="run the tests in this process as if the clock read ISO (e.g. 2026-12-02T23:59:30Z) at the "
        "start, ticking on: a test that depends on the hour of the day shows itself. Processes the "
        "tests start keep the real clock, so leave out the tests whose agents run in subprocesses "
        "(tests/e2e, tests/fleet_sim, tests/bench, tests/fleet_demo's e2e are in tests/e2e).",
    )


def pytest_configure(config: pytest.Config) -> None:
    moment = config.getoption("--fake-now")
    if moment:
        from datetime import datetime

        import time_machine

        try:
            start = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            raise pytest.UsageError(f"--fake-now: not an ISO date and time: {moment!r}") from None
        if start.tzinfo is None:
            raise pytest.UsageError(f"--fake-now: give a timezone (Z or +HH:MM): {moment!r}")
        # Started for the whole session: every test sees the clock run on from `start`.
        config._fake_clock = time_machine.travel(start, tick=True)  # type: ignore[attr-defined]
        config._fake_clock.start()  # type: ignore[attr-defined]
