"""fleet_daily: the Airflow DAG of the daily EC2 fleet run, built from dags/fleet.yaml (or
$FLEET_CONFIG) with no AWS call and no Variable read (fleet_dag/builder.py holds the shape).

"Airflow" and "DAG" in this file are what the DAG processor's safe mode looks for.
"""

from fleet_dag.builder import build_dag
from fleet_dag.config import load_config

dag = build_dag(load_config())
