"""The daily flow built only from the Amazon provider's stock operators, as a user would write it.

The benchmark's baseline (``bench/method.md``, *stock*): start the signer; per worker role, in a task
group, ``EC2StartInstanceOperator`` (waits for ``running`` in its slot), ``SsmRunCommandOperator``
(``AWS-RunShellScript``, waits for the command in its slot) and ``EC2InstanceStateSensor`` for
``stopped`` (poke mode); ``EC2StopInstanceOperator`` for the signer; each with its defaults unless
:class:`StockIntervals` shortens them. The provider has no sensor for the SSM agent: the flow relies
on the start operator's own wait outlasting the agent's registration. The hosts run the same agent
command as ``fleet_daily``; trigger rules are Airflow's defaults, so a failed role leaves the signer
running, as a straightforward port of the Lambda would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pendulum
from airflow.providers.amazon.aws.operators.ec2 import EC2StartInstanceOperator, EC2StopInstanceOperator
from airflow.providers.amazon.aws.operators.ssm import SsmRunCommandOperator
from airflow.providers.amazon.aws.sensors.ec2 import EC2InstanceStateSensor
from airflow.sdk import DAG, Param, TaskGroup
from airflow.timetables.trigger import CronTriggerTimetable

STOCK_DAG_ID = "fleet_daily_stock"
DOCUMENT = "AWS-RunShellScript"
# The provider's defaults, for the report (EC2 operators' check_interval, the sensor's
# BaseSensorOperator poke_interval, SsmRunCommandOperator's waiter_delay).
DEFAULT_CHECK_INTERVAL = 15.0
DEFAULT_POKE_INTERVAL = 60.0
DEFAULT_WAITER_DELAY = 120.0


@dataclass(frozen=True)
class StockIntervals:
    """Polling intervals of the stock operators; ``None`` keeps the provider's default."""

    check_interval: float | None = None  # EC2Start/StopInstanceOperator
    poke_interval: float | None = None  # EC2InstanceStateSensor
    waiter_delay: int | None = None  # SsmRunCommandOperator

    @classmethod
    def every(cls, seconds: float) -> StockIntervals:
        """The same interval for all three (e.g. the fleet DAG's ``poll_interval``)."""
        if seconds <= 0:
            raise ValueError(f"a polling interval must be positive, got {seconds!r}")
        return cls(check_interval=seconds, poke_interval=seconds, waiter_delay=max(1, int(seconds)))

    @property
    def is_default(self) -> bool:
        return self.check_interval is None and self.poke_interval is None and self.waiter_delay is None

    def describe(self) -> str:
        """The intervals the operators will use, defaults filled in."""
        label = "provider defaults" if self.is_default else "shortened"
        return (
            f"{label}: start/stop check_interval {self.check_interval or DEFAULT_CHECK_INTERVAL:g} s, "
            f"sensor poke_interval {self.poke_interval or DEFAULT_POKE_INTERVAL:g} s, "
            f"SSM waiter_delay {float(self.waiter_delay or DEFAULT_WAITER_DELAY):g} s"
        )


def _only_set(**kwargs: Any) -> dict[str, Any]:
    return {key: value for key, value in kwargs.items() if value is not None}


def build_stock_dag(config: Any, dag_id: str = STOCK_DAG_ID, intervals: StockIntervals | None = None) -> DAG:
    """The stock-operator DAG for a validated ``FleetConfig`` (one task group per worker role)."""
    from fleet_dag.builder import RUN_DATE, agent_command, run_date_for

    intervals = intervals or StockIntervals()
    common = {"aws_conn_id": config.aws_conn_id, "region_name": config.region}
    with DAG(
        dag_id=dag_id,
        description=f"The fleet's daily flow from stock Amazon provider operators ({intervals.describe()})",
        schedule=CronTriggerTimetable(config.schedule, timezone=config.timezone),
        start_date=pendulum.datetime(2026, 1, 1, tz=config.timezone),
        catchup=False,
        max_active_runs=1,
        tags=["fleet", "bench", "stock"],
        params={"force": Param(False, type="boolean")},
        user_defined_macros={"fleet_run_date": lambda dag_run: run_date_for(dag_run, config.timezone)},
    ) as dag:
        check = _only_set(check_interval=intervals.check_interval)
        start_signer = EC2StartInstanceOperator(
            task_id="start_signer", instance_id=config.signer.instance, **check, **common
        )
        stop_signer = EC2StopInstanceOperator(
            task_id="stop_signer", instance_id=config.signer.instance, **check, **common
        )
        for role in config.roles:
            with TaskGroup(group_id=role.name):
                start = EC2StartInstanceOperator(
                    task_id="start", instance_id=role.instance, **check, **common
                )
                run_agent = SsmRunCommandOperator(
                    task_id="run_agent",
                    document_name=DOCUMENT,
                    run_command_kwargs={
                        "InstanceIds": [role.instance],
                        "Parameters": {"commands": [agent_command(config, role)]},
                        "Comment": f"{dag_id} {role.name} {RUN_DATE}"[:100],
                    },
                    **_only_set(waiter_delay=intervals.waiter_delay),
                    **common,
                )
                wait_stopped = EC2InstanceStateSensor(
                    task_id="wait_stopped",
                    instance_id=role.instance,
                    target_state="stopped",
                    **_only_set(poke_interval=intervals.poke_interval),
                    **common,
                )
                start_signer >> start >> run_agent >> wait_stopped >> stop_signer
    return dag
