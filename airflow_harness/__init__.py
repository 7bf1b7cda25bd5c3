"""Real Airflow 3 (scheduler, triggerer, DAG processor, API server) in subprocesses, on the simulator.

What ``make demo`` (:mod:`fleet_demo`), ``make bench`` (:mod:`bench`) and the e2e tests
(``tests/e2e``) run ``fleet_daily`` with:

- :mod:`airflow_harness.components`: the four components as subprocesses, their logs, REST calls
  with a token (:class:`AirflowComponents`, :class:`HarnessError`);
- :mod:`airflow_harness.harness`: what is done with them: wait for a DAG, trigger runs and
  backfills, wait for them, clear tasks, read results and XComs (:class:`AirflowHarness`);
- :mod:`airflow_harness.run_status`: a run as the REST API shows it, and why it is stuck (plain
  functions of the API's JSON: :class:`RunResult`, :class:`TaskResult`).
"""

from airflow_harness.components import AirflowComponents, HarnessError
from airflow_harness.harness import AirflowHarness
from airflow_harness.run_status import RunResult, TaskResult, parse

__all__ = ["AirflowComponents", "AirflowHarness", "HarnessError", "RunResult", "TaskResult", "parse"]
