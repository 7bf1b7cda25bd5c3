"""Build the ``fleet_daily`` DAG from a validated :class:`~fleet_dag.config.FleetConfig`.

The shape (docs/architecture.md, "The flow of fleet_daily")::

    wait_turn (setup: one run at a time on the fleet) ──► every role's skip_if_done, and stop_signer

    per role: skip_if_done → start → wait_running → wait_ssm_online → run_agent → wait_stopped → report
                │                                                         ▲            │
                └──► start_signer (setup: when some role has work) ───────┘            ▼
                      └───────────────────────────────────────────────────────────────► stop_signer (teardown)

Building makes no AWS call and reads no Variable: everything that needs AWS happens in tasks.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, BaseOperator, Param, TaskGroup, TriggerRule
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert
from airflow.timetables.trigger import CronTriggerTimetable
from operators.fleet_deadline_alerts import FleetRunQueuedAtDeadline, fleet_deadline_alert
from operators.fleet_done_checks import FORCE_PARAM, ROLES_PARAM
from operators.fleet_ec2_operators import FleetStartInstancesOperator, FleetStopInstancesOperator
from operators.fleet_role_operators import (
    FleetRoleReportOperator,
    FleetRunAgentOperator,
    FleetSkipIfDoneOperator,
)
from operators.fleet_sensors import FleetInstanceStateSensor, FleetSsmAgentOnlineSensor
from operators.fleet_turn_sensors import FleetWaitTurnSensor

from fleet_dag.config import FleetConfig, RoleConfig

DAG_ID = "fleet_daily"
TURN_TASK_ID = "wait_turn"
DEFAULT_NOTIFIER = "operators.fleet_notifiers.FleetLogNotifier"

# The run date, rendered in every task that needs it (see run_date_for).
RUN_DATE = "{{ fleet_run_date(dag_run) }}"

# The agent detaches within seconds; its SSM command only has to outlive the hand-over.
AGENT_COMMAND_TIMEOUT = timedelta(minutes=5)

DOC_MD = """
### fleet_daily

For each worker role: skip when the agent already completed the run date, start the instance,
wait until it runs and its SSM agent is online, hand the role's jobs to `instance_agent` once the
API signer runs, wait (deferred, bounded by `max_runtime`) until the agent stopped the instance,
and report each job's exit code, duration and log tail. The signer (a setup/teardown pair) boots
only when some role has work, and stops when every role is done, even when one failed.

**One run at a time**: `wait_turn` waits (deferred) until no other run of the DAG is on the
fleet or ahead of this one (a backfill, a manual run); its log says who it waits for.

**Run date**: the run's logical date (else `run_after`) in the fleet's timezone.

**Params**: `force` (bool) re-runs jobs already done for the date; `roles` limits the run to
some roles. Config: `dags/fleet.yaml` or `$FLEET_CONFIG`.
"""


def run_date_for(dag_run: Any, timezone: str) -> str:
    """The run date of a DAG run (never a VM's clock): its logical date, else its ``run_after``."""
    moment = getattr(dag_run, "logical_date", None) or getattr(dag_run, "run_after", None)
    if moment is None:
        raise ValueError(f"DAG run {dag_run!r} has neither a logical date nor run_after")
    return pendulum.instance(moment).in_timezone(timezone).to_date_string()


def agent_max_runtime(role: RoleConfig) -> timedelta:
    """The role's max_runtime less a margin (10 %, at most 5 minutes) left for a clean end."""
    return role.max_runtime - min(role.max_runtime * 0.1, timedelta(minutes=5))


def agent_spec(config: FleetConfig, role: RoleConfig) -> dict[str, Any]:
    """The job spec the agent receives on stdin (instance_agent/spec.py validates it again)."""
    jobs = []
    for job in role.jobs:
        entry: dict[str, Any] = {
            "name": job.name,
            "argv": list(job.argv),
            "timeout": _seconds(job.timeout),
            "rerun_on_interrupt": job.rerun_on_interrupt,
        }
        if job.shell:
            entry["shell"] = True
        if job.cwd:
            entry["cwd"] = job.cwd
        if job.env:
            entry["env"] = dict(job.env)
        jobs.append(entry)
    spec: dict[str, Any] = {
        "jobs": jobs,
        "heartbeat_seconds": _seconds(config.agent.heartbeat),
        # The agent stops its jobs a little before the DAG's own bound, so that it records them
        # timed_out and powers off cleanly before the DAG has to force-stop the instance.
        "max_runtime": _seconds(agent_max_runtime(role)),
    }
    if config.s3_log_prefix:
        spec["s3_log_prefix"] = config.s3_log_prefix
    return spec


def _seconds(duration: timedelta) -> int | float:
    """Whole seconds as an int; anything finer as is (int() sent a 0.5 s timeout as 0)."""
    seconds = duration.total_seconds()
    return int(seconds) if seconds.is_integer() else seconds


def agent_command(config: FleetConfig, role: RoleConfig) -> str:
    """The shell script SSM runs: the agent, its arguments, and the spec as a quoted heredoc
    (the shell expands nothing inside it)."""
    argv = [
        *config.agent.command,
        "run",
        "--role",
        role.name,
        "--date",
        RUN_DATE,
        "--spec",
        "-",
        "--state-dir",
        config.agent.state_dir,
        "--log-dir",
        config.agent.log_dir,
        "--shutdown",
        config.agent.shutdown,
    ]
    # The run's `force` param adds --force when Airflow renders the command.
    force = "{% if params." + FORCE_PARAM + " %} --force{% endif %}"
    spec = _jinja_inert(json.dumps(agent_spec(config, role), separators=(",", ":"), sort_keys=True))
    # {% raw %}: Airflow renders this command for the run date; the spec must reach the agent
    # byte for byte, whatever braces a job's argv holds (_jinja_inert: even "{% endraw %}").
    return f"{shlex.join(argv)}{force} <<'FLEET_SPEC'\n{{% raw %}}{spec}{{% endraw %}}\nFLEET_SPEC"


def _jinja_inert(spec_json: str) -> str:
    """The spec's JSON with no Jinja opener (``{%``, ``{{``, ``{#``) left in it.

    Such a ``{`` can only sit inside a JSON string (a structural brace is followed by a quote or
    ``}``), where ``\\u007b`` is the same character to any JSON parser, the agent's included.
    """
    return re.sub(r"\{(?=[%{#])", r"\\u007b", spec_json)


def import_string(path: str) -> Any:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise ImportError(f"notifier.class_path {path!r} cannot be imported: {error}") from error


def _notifier_args(config: FleetConfig, message: str) -> tuple[str, dict[str, Any]]:
    """The notifier's import path and arguments; the default one says ``message``."""
    if config.notifier is None:
        return DEFAULT_NOTIFIER, {"message": message}
    return config.notifier.class_path, dict(config.notifier.kwargs)


def _notifier(config: FleetConfig, message: str):
    path, kwargs = _notifier_args(config, message)
    return import_string(path)(**kwargs)


def _deadline(config: FleetConfig) -> DeadlineAlert:
    path, kwargs = _notifier_args(config, f"{DAG_ID} still running {config.alert_after} after it was queued")
    # monitor.py's "VM still up after 00:15" alert, as an Airflow deadline on the run, with a
    # reference of our own (operators.fleet_deadline_alerts: why). The callback wraps the notifier
    # so that a run that has ended is never alerted.
    return DeadlineAlert(
        reference=FleetRunQueuedAtDeadline(),
        interval=config.alert_after,
        callback=AsyncCallback(
            fleet_deadline_alert,
            kwargs={
                "notifier": path,
                "notifier_kwargs": kwargs,
                "alert_after": config.alert_after.total_seconds(),
            },
        ),
    )


def poll_plan(config: FleetConfig, bound: timedelta, *, at_most: int | None = None) -> tuple[int, int]:
    """A wait's pace within ``bound``: ``(seconds between polls, polls)``, the config's
    ``poll_interval`` in whole seconds (1 to ``at_most``), and at least one poll."""
    every = max(1, int(config.poll_interval.total_seconds()))
    if at_most is not None:
        every = min(every, at_most)
    return every, max(1, int(bound.total_seconds()) // every)


@dataclass(frozen=True)
class RoleTasks:
    """The tasks of one role's group that the DAG wires to the signer and to ``wait_turn``."""

    group: TaskGroup
    skip_if_done: BaseOperator
    run_agent: BaseOperator
    wait_stopped: BaseOperator


def build_role_group(config: FleetConfig, role: RoleConfig) -> RoleTasks:
    common = {"aws_conn_id": config.aws_conn_id, "region_name": config.region}
    poll, boot_polls = poll_plan(config, config.boot_timeout)
    command_poll, command_polls = poll_plan(config, AGENT_COMMAND_TIMEOUT, at_most=5)
    # The steps that act on a VM: in a cleared run, first make sure the fleet is the run's, at
    # wait_turn's pace.
    guarded = {"turn_task_id": TURN_TASK_ID, "turn_poll_interval": poll}
    with TaskGroup(
        group_id=role.name, tooltip=f"{role.name}: {', '.join(j.name for j in role.jobs)}"
    ) as group:
        skip_if_done = FleetSkipIfDoneOperator(
            task_id="skip_if_done",
            role=role.name,
            instance_ids=role.instance_ids,
            run_date=RUN_DATE,
            **common,
        )
        start = FleetStartInstancesOperator(
            task_id="start",
            instance_ids=[role.instance] if role.instance else None,
            candidates=role.candidates,
            wait_for_completion=False,
            # Every step below skip_if_done checks the agent's tags again before it acts: a task
            # cleared on a day already done (the UI's Clear) boots, waits for and sends nothing.
            skip_when_done_for=RUN_DATE,
            **guarded,
            **common,
        )
        # The waits on the started instances: deferred, at the config's pace.
        watch = {"instance_ids": start.output, "deferrable": True, "poke_interval": poll, **common}
        wait_running = FleetInstanceStateSensor(
            task_id="wait_running",
            target_state="running",
            skip_when_done_for=RUN_DATE,
            timeout=int(config.boot_timeout.total_seconds()),
            **watch,
        )
        wait_ssm = FleetSsmAgentOnlineSensor(
            task_id="wait_ssm_online",
            skip_when_done_for=RUN_DATE,
            # Whole polls: the trigger gives up after the last poll that fits in boot_timeout.
            timeout=poll * boot_polls,
            **watch,
        )
        run_agent = FleetRunAgentOperator(
            task_id="run_agent",
            instance_ids=start.output,
            run_date=RUN_DATE,
            heartbeat_grace=role.heartbeat_grace.total_seconds(),
            parameters={"commands": [agent_command(config, role)]},
            comment=f"{DAG_ID} {role.name} {RUN_DATE}",
            execution_timeout_seconds=int(AGENT_COMMAND_TIMEOUT.total_seconds()),
            reuse_in_flight=True,
            **guarded,
            deferrable=True,
            waiter_delay=command_poll,
            # One more: the last poll lands on the bound itself (61 polls of 5 s for 300 s).
            waiter_max_attempts=command_polls + 1,
            **common,
        )
        wait_stopped = FleetInstanceStateSensor(
            task_id="wait_stopped",
            target_state="stopped",
            heartbeat_grace=role.heartbeat_grace.total_seconds(),
            run_date=RUN_DATE,
            stop_on_failure=True,
            timeout=int(role.max_runtime.total_seconds()),
            # The DAG's retries, for an AWS error and for Airflow 3.3's race that fails a deferred
            # try whose trigger fires within a second or so (a stale executor event for the
            # deferring process: apache/airflow#67287, #72716). An overrun or a silent agent is
            # final all the same: AirflowSensorTimeout and FleetStateFailure are never retried.
            **guarded,
            **watch,
        )
        report = FleetRoleReportOperator(
            task_id="report",
            role=role.name,
            instances=wait_stopped.output,
            run_date=RUN_DATE,
            job_names=[job.name for job in role.jobs],
            s3_log_prefix=config.s3_log_prefix,
            retries=0,
            **common,
        )
        skip_if_done >> start >> wait_running >> wait_ssm >> run_agent >> wait_stopped >> report
    return RoleTasks(group=group, skip_if_done=skip_if_done, run_agent=run_agent, wait_stopped=wait_stopped)


def build_dag(config: FleetConfig, dag_id: str = DAG_ID) -> DAG:
    common = {"aws_conn_id": config.aws_conn_id, "region_name": config.region}
    role_names = [role.name for role in config.roles]
    poll, boot_polls = poll_plan(config, config.boot_timeout)
    # The signer's start and stop wait for its state like every other wait: deferred and bounded.
    signer = {
        "instance_ids": [config.signer.instance],
        "turn_task_id": TURN_TASK_ID,
        "turn_poll_interval": poll,
        "deferrable": True,
        "waiter_delay": poll,
        "waiter_max_attempts": boot_polls,
        **common,
    }
    with DAG(
        dag_id=dag_id,
        description="Start the fleet, run each role's jobs once per day, stop every VM when done",
        schedule=CronTriggerTimetable(config.schedule, timezone=config.timezone),
        start_date=pendulum.datetime(2026, 1, 1, tz=config.timezone),
        catchup=False,
        max_active_runs=1,
        doc_md=DOC_MD,
        tags=["fleet", "ec2", "ssm"],
        default_args={
            "retries": 2,
            "retry_delay": timedelta(seconds=30),
            "retry_exponential_backoff": True,
            "max_retry_delay": timedelta(minutes=10),
        },
        user_defined_macros={"fleet_run_date": lambda dag_run: run_date_for(dag_run, config.timezone)},
        on_failure_callback=_notifier(config, f"{DAG_ID} failed"),
        deadline=_deadline(config),
    ) as dag:
        # One run at a time on the fleet, whatever started it (a backfill's runs do not count
        # against max_active_runs=1): no role's first step before this run's turn. A setup, so
        # that a Clear of any step it guards clears it too and the run takes its turn again.
        wait_turn = FleetWaitTurnSensor(task_id=TURN_TASK_ID, poke_interval=poll).as_setup()
        # Waits for `running`: no agent is sent its command before the signer is up.
        start_signer = FleetStartInstancesOperator(
            task_id="start_signer",
            # Booted only while some role of the run has work for the date, also when cleared: a
            # second run for a date already done boots nothing at all.
            skip_when_done_for=RUN_DATE,
            needed_by={role.name: role.instance_ids for role in config.roles},
            trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
            **signer,
        )
        stop_signer = FleetStopInstancesOperator(
            task_id="stop_signer",
            # Whenever this run had its turn, even when start_signer itself failed (say its wait
            # timed out after StartInstances went through): stopping a stopped instance is a no-op,
            # a forgotten one costs. Never when it had no turn: then the signer is another run's.
            # (Airflow's rule for a teardown, which as_teardown below sets too.)
            trigger_rule=TriggerRule.ALL_DONE_SETUP_SUCCESS,
            **signer,
        )
        roles = [build_role_group(config, role) for role in config.roles]
        for role in roles:
            wait_turn >> role.skip_if_done >> start_signer
            # The workers boot while the signer does; only their agents wait for it.
            start_signer >> role.run_agent
        # The signer is stopped as soon as every worker is down: the reports need no signer and
        # run beside it (each report still decides its role's outcome and the run's).
        [role.wait_stopped for role in roles] >> stop_signer.as_teardown(setups=[start_signer, wait_turn])
    # Set once the tasks exist: every operator made while the DAG has params deep-copies them
    # into its own (several times over), and the `roles` param lists every role, so parsing
    # grew with the square of the fleet (1 s at 300 roles). At run time Airflow merges the
    # DAG's params into each task's (process_params), so the tasks see them all the same.
    dag.params = {
        FORCE_PARAM: Param(False, type="boolean", description="Re-run jobs already done for the date"),
        ROLES_PARAM: Param(
            role_names,
            type="array",
            items={"type": "string", "enum": role_names},
            minItems=1,
            uniqueItems=True,
            description="The worker roles to run",
        ),
    }
    return dag
