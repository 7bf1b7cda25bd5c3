"""One ``run``, in two halves: :func:`prepare` (lock, state, plan) and :func:`execute` (the jobs).

``prepare`` runs in the process the SSM command started, so every refusal reaches the caller
with its exit code; ``execute`` runs in the detached supervisor, holding the very same lock.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

from instance_agent import exit_codes, procinfo
from instance_agent.clock import SystemClock, format_time
from instance_agent.imds import ImdsClient
from instance_agent.launcher import PopenLauncher
from instance_agent.lock import Holder, StateDirLock
from instance_agent.planner import (
    LOST_PROCESS_REASON,
    RUN,
    SKIP,
    WATCH,
    Decision,
    plan_jobs,
    reasons_by_action,
)
from instance_agent.protocol import (
    DEFAULT_IMDS_POLL_SECONDS,
    JOB_INTERRUPTED,
    JOB_SUCCEEDED,
    STATE_RUNNING,
    STATE_SUCCEEDED,
    job_log_path,
    run_log_dir,
    s3_run_prefix,
    split_s3_prefix,
)
from instance_agent.reporter import Reporter, boto3_client_factory
from instance_agent.spec import RunSpec, spec_from_document
from instance_agent.state import AgentRecord, JobRecord, RunState, StateError, StateStore
from instance_agent.supervisor import Supervisor, SupervisorSettings

log = logging.getLogger("instance_agent")


@dataclass
class RunOptions:
    role: str
    run_date: str
    state_dir: str
    log_dir: str
    shutdown: str
    force: bool = False
    heartbeat_seconds: float | None = None  # overrides the spec's
    imds_poll_seconds: float = DEFAULT_IMDS_POLL_SECONDS


@dataclass
class Prepared:
    options: RunOptions
    spec: RunSpec
    lock: StateDirLock
    store: StateStore
    state: RunState
    decisions: list[Decision]
    warnings: list[str] = field(default_factory=list)

    def to_payload(self) -> dict[str, Any]:
        """What the detached supervisor needs, sent through its stdin (env values stay off disk)."""
        return {
            "options": dict(vars(self.options)),
            "spec": self.spec.to_dict(),
            "decisions": [decision.__dict__ for decision in self.decisions],
            "warnings": self.warnings,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], lock: StateDirLock) -> Prepared:
        options = RunOptions(**payload["options"])
        store = StateStore(options.state_dir)
        state = store.load(options.run_date)
        if state is None:
            raise StateError(f"{store.path(options.run_date)}: missing")
        return cls(
            options=options,
            spec=spec_from_document(payload["spec"]),
            lock=lock,
            store=store,
            state=state,
            decisions=[Decision(**item) for item in payload["decisions"]],
            warnings=list(payload["warnings"]),
        )

    def names(self, action: str) -> list[str]:
        return [decision.job for decision in self.decisions if decision.action == action]

    def summary(self, pid: int) -> dict[str, Any]:
        """The one line of JSON ``run`` prints: what runs, what is skipped, and why."""
        busy = self.names(RUN) or self.names(WATCH)
        return {
            "status": "started" if busy else "nothing_to_do",
            "role": self.options.role,
            "date": self.options.run_date,
            "pid": pid,
            "force": self.options.force,
            **reasons_by_action(self.decisions),
            "warnings": self.warnings,
            "state_file": self.store.path(self.options.run_date),
            "log_dir": run_log_dir(self.options.log_dir, self.options.run_date),
        }


def holder_text(options: RunOptions) -> str:
    """What a second ``run`` reports as the lock's holder: this process, for the run's role and date."""
    return Holder(os.getpid(), options.role, options.run_date).text()


def prepare(
    options: RunOptions,
    spec: RunSpec,
    *,
    clock: Any = None,
    alive: Callable[[JobRecord], bool] = lambda record: procinfo.is_alive(record.pid, record.process),
) -> Prepared:
    """Lock the state dir, read the date's state, plan, and record the plan (atomically).

    Raises ``LockBusy``, ``StateError`` (refused; file untouched) or ``OSError``.
    """
    clock = clock or SystemClock()
    os.makedirs(options.state_dir, exist_ok=True)
    os.makedirs(run_log_dir(options.log_dir, options.run_date), exist_ok=True)
    lock = StateDirLock(options.state_dir)
    lock.acquire()
    try:
        lock.describe_holder(holder_text(options))
        store = StateStore(options.state_dir)
        state = store.load(options.run_date)
        if state is not None and state.role != options.role:
            raise StateError(
                f"{store.path(options.run_date)}: belongs to role {state.role!r}, not {options.role!r}"
            )
        decisions = plan_jobs(spec, state, force=options.force, alive=alive)
        warnings = disk_warnings([options.state_dir, options.log_dir], spec.disk_warn_percent)
        if options.force:
            records = state.jobs if state else {}
            succeeded = [
                name for name in spec.job_names if name in records and records[name].status == JOB_SUCCEEDED
            ]
            warnings.insert(
                0,
                f"--force: every job of {options.run_date} runs again, including the "
                f"{len(succeeded)} that already succeeded {succeeded}",
            )
        state = _apply(state, decisions, options, spec, warnings, clock)
        store.save(state)
    except BaseException:
        lock.release()
        raise
    return Prepared(options, spec, lock, store, state, decisions, warnings)


def _apply(
    state: RunState | None,
    decisions: list[Decision],
    options: RunOptions,
    spec: RunSpec,
    warnings: list[str],
    clock: Any,
) -> RunState:
    now = format_time(clock.now())
    state = state or RunState(date=options.run_date, role=options.role)
    for decision in decisions:
        record = state.jobs.setdefault(decision.job, JobRecord())
        record.log = job_log_path(options.log_dir, options.run_date, decision.job)
        if decision.lost:
            record.status = JOB_INTERRUPTED
            record.reason = f"{LOST_PROCESS_REASON}; noticed {now}"
        if decision.action == RUN:
            record.archive()
            record.reason = decision.reason
    state.state = STATE_RUNNING
    state.agent = AgentRecord(
        pid=os.getpid(),
        started_at=now,
        force=options.force,
        shutdown=options.shutdown,
        warnings=list(warnings),
    )
    state.plan = reasons_by_action(decisions)
    return state


def execute(
    prepared: Prepared,
    *,
    signals: Any,
    clock: Any = None,
    launcher: Any = None,
    imds: Any = None,
    client_factory: Callable[[str | None], Callable[[str], Any]] = boto3_client_factory,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run the planned jobs to the end, report, shut down; returns an exit code."""
    options, spec = prepared.options, prepared.spec
    clock = clock or SystemClock()
    env = dict(os.environ if env is None else env)
    imds = imds if imds is not None else ImdsClient(env=env)
    store, agent = prepared.store, prepared.state.agent
    agent.pid, agent.process = os.getpid(), procinfo.identity(os.getpid())
    agent.instance_id, region = _identity(imds, env)
    try:
        store.save(prepared.state)
    except Exception as error:  # the supervisor below still runs, records and ends the run
        log.error("cannot write the state file %s: %s", store.path(options.run_date), error)
    bucket, prefix = split_s3_prefix(spec.s3_log_prefix) if spec.s3_log_prefix else (None, "")
    reporter = Reporter(
        instance_id=agent.instance_id,
        client_factory=client_factory(region),
        s3_bucket=bucket,
        s3_prefix=s3_run_prefix(prefix, options.run_date, options.role),
    )
    settings = SupervisorSettings(
        spec=spec,
        role=options.role,
        run_date=options.run_date,
        log_dir=options.log_dir,
        to_run=prepared.names(RUN),
        to_watch=prepared.names(WATCH),
        base_env=env,
        heartbeat_seconds=options.heartbeat_seconds or spec.heartbeat_seconds,
        kill_grace_seconds=spec.kill_grace_seconds,
        imds_poll_seconds=options.imds_poll_seconds,
        tick_seconds=min(0.5, options.imds_poll_seconds),
        max_runtime=spec.max_runtime,
    )
    supervisor = Supervisor(
        settings,
        state=prepared.state,
        store=store,
        launcher=launcher or PopenLauncher(),
        clock=clock,
        reporter=reporter,
        imds=None if imds.disabled else imds,
        signals=signals,
    )
    for warning in prepared.warnings:
        log.warning("%s", warning)
    log.info(
        "run for %s (role %s): run %s, skip %s, watch %s",
        options.run_date,
        options.role,
        prepared.names(RUN),
        prepared.names(SKIP),
        prepared.names(WATCH),
    )
    try:
        result = supervisor.run()
    finally:
        reporter.close()
    if result.interrupted_by:
        log.warning("interrupted (%s): not shutting down, AWS or the OS already is", result.interrupted_by)
        return exit_codes.EXIT_INTERRUPTED
    if not shut_down(options.shutdown, stop_instance=reporter.stop_instance):
        return exit_codes.EXIT_SHUTDOWN_FAILED
    return exit_codes.EXIT_OK if result.state == STATE_SUCCEEDED else exit_codes.EXIT_JOBS_FAILED


def disk_warnings(
    paths: Iterable[str],
    threshold_percent: float,
    usage: Callable[[str], tuple[int, int, int]] = shutil.disk_usage,
) -> list[str]:
    """One warning per filesystem (of ``paths``) fuller than ``threshold_percent``.

    A full disk would lose the state file and the logs.
    """
    warnings, seen = [], set()
    for path in paths:
        try:
            device = os.stat(path).st_dev
            if device in seen:
                continue
            seen.add(device)
            total, _used, free = usage(path)
        except OSError as error:
            warnings.append(f"disk check of {path} failed: {error}")
            continue
        percent = 100.0 * (total - free) / total if total > 0 else 0.0
        if percent > threshold_percent:
            warnings.append(
                f"disk holding {path} is {percent:.0f}% full (warning above {threshold_percent:g}%), "
                f"{free / 2**30:.1f} GiB free"
            )
    return warnings


SHUTDOWN_MODES = ("os", "ec2", "none")
OS_SHUTDOWN_COMMAND = ("shutdown", "-h", "now")


def run_os_command(command: Sequence[str]) -> bool:
    try:
        completed = subprocess.run(list(command), timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.error("%s failed: %s", " ".join(command), error)
        return False
    if completed.returncode != 0:
        log.error("%s exited %s", " ".join(command), completed.returncode)
    return completed.returncode == 0


def shut_down(
    mode: str,
    *,
    stop_instance: Callable[[], bool],
    run_command: Callable[[Sequence[str]], bool] = run_os_command,
) -> bool:
    """Shut the machine down as ``--shutdown`` says, at once; False when that failed."""
    if mode == "none":
        log.info("--shutdown none: leaving the machine running")
        return True
    if mode == "ec2":
        log.info("stopping this instance with StopInstances")
        return stop_instance()
    if mode == "os":
        log.info("running %s", " ".join(OS_SHUTDOWN_COMMAND))
        return run_command(OS_SHUTDOWN_COMMAND)
    raise ValueError(f"unknown shutdown mode {mode!r}; expected one of {SHUTDOWN_MODES}")


def _identity(imds: Any, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if imds.disabled:
        log.warning("IMDS disabled: no instance id, no interruption notices")
        return None, region
    try:
        instance_id = imds.instance_id()
        region = region or imds.region()
    except Exception as error:  # ImdsError, or anything else: no tags, but the jobs run
        log.warning("cannot read this instance's identity from IMDS: %s", error)
        return None, region
    log.info("instance %s in %s", instance_id, region)
    return instance_id, region


def configure_logging(log_file: str | None = None) -> None:
    """Log lines with UTC times to stderr (the journal, or the detached agent's log file)."""
    formatter = logging.Formatter(
        "%(asctime)s.%(msecs)03dZ %(levelname)s fleet-agent[%(process)d] %(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    log.handlers[:] = handlers
    for handler in handlers:
        handler.setFormatter(formatter)
    log.setLevel(logging.INFO)
    log.propagate = False
