"""Real Airflow 3 (scheduler, triggerer, DAG processor, API server) in subprocesses, on the simulator.

What ``make demo``, ``make bench`` and the e2e tests run ``fleet_daily`` with: the components
(:mod:`~airflow_harness.components`), what is done with them (:mod:`~airflow_harness.harness`),
and a run as the REST API shows it (:mod:`~airflow_harness.run_status`).
"""

from airflow_harness.components import AirflowComponents, HarnessError
from airflow_harness.harness import AirflowHarness
from airflow_harness.run_status import RunResult, TaskResult, parse

__all__ = ["AirflowComponents", "AirflowHarness", "HarnessError", "RunResult", "TaskResult", "parse"]
