"""The main loop: start the jobs, reap them, enforce timeouts, react to signals and notices.

One thread, in this order on every turn: signals, IMDS notices, reaping, timeouts, the
heartbeat. A stop is always SIGTERM to the job's process group, then SIGKILL once the grace
period (or the interruption deadline) has passed.

A launch that raises is a ``failed`` job (it never ran), and the run goes on. Anything else
that raises in the loop stops the jobs still running (recorded ``interrupted``: they did start)
and ends the run as ``failed``: a run is never left half-recorded. The caller, not the
supervisor, shuts the machine down.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from instance_agent import procinfo
from instance_agent.clock import format_time
from instance_agent.launcher import EXIT_UNKNOWN, LaunchError, ProcessHandle, WatchedProcess
from instance_agent.protocol import (
    DEFAULT_HEARTBEAT_SECONDS,
    DEFAULT_IMDS_POLL_SECONDS,
    DEFAULT_KILL_GRACE_SECONDS,
    JOB_FAILED,
    JOB_INTERRUPTED,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    JOB_TIMED_OUT,
    STATE_INTERRUPTED,
    job_log_path,
    parse_utc,
    rebalance_notice,
    spot_notice,
)
from instance_agent.records import RunRecords, SupervisorResult, error_text
from instance_agent.spec import JobSpec, RunSpec
from instance_agent.state import RunState, StateStore

log = logging.getLogger("instance_agent")

STOP_TIMEOUT = "timeout"
STOP_MAX_RUNTIME = "max_runtime"
STOP_INTERRUPT = "interrupt"
STOP_FAILURE = "failure"  # the agent itself failed: what runs is stopped, the run ends

# After SIGKILL, a process that still has not been reaped this long later is given up on.
_GIVE_UP_AFTER_KILL = 10.0
# How often a failed run polls the jobs it is stopping.
_ABORT_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class SupervisorSettings:
    spec: RunSpec
    role: str
    run_date: str
    log_dir: str
    to_run: list[str]  # started, in this order
    to_watch: list[str]  # still running from an earlier agent
    base_env: Mapping[str, str]  # every job's environment, before its own env
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    kill_grace_seconds: float = DEFAULT_KILL_GRACE_SECONDS
    imds_poll_seconds: float = DEFAULT_IMDS_POLL_SECONDS
    tick_seconds: float = 0.5
    # Time kept back from an interruption deadline to flush state, tags and logs.
    flush_reserve_seconds: float = 20.0
    max_runtime: float | None = None


@dataclass
class _Active:
    name: str
    handle: ProcessHandle
    deadline: float | None  # monotonic; None: no timeout
    stop_reason: str | None = None
    stop_detail: str = ""
    kill_at: float | None = None
    killed_at: float | None = None


class Supervisor(RunRecords):
    def __init__(
        self,
        settings: SupervisorSettings,
        *,
        state: RunState,
        store: StateStore,
        launcher: Any,
        clock: Any,
        reporter: Any,
        imds: Any,
        signals: Any,
    ):
        self.settings = settings
        self.spec = settings.spec
        self.state = state
        self.store = store
        self.launcher = launcher
        self.clock = clock
        self.reporter = reporter
        self.imds = imds
        self.signals = signals
        self.active: dict[str, _Active] = {}
        self.interrupted_by: str | None = None
        self.failure: str | None = None  # what made the agent give up supervising, if anything
        self.notice: str | None = None
        self._run_deadline: float | None = None
        self._next_heartbeat = 0.0
        self._next_imds_poll = 0.0
        self._imds_failures = 0

    def run(self) -> SupervisorResult:
        """Start, supervise, record: whatever fails on the way (a bug, a broken pipe), it ends recorded."""
        try:
            self._supervise()
        except Exception as error:
            self._abort(error)
        return self._finish_run()

    def _supervise(self) -> None:
        started = self.clock.monotonic()
        if self.settings.max_runtime:
            self._run_deadline = started + self.settings.max_runtime
        self._handle_signals()
        for name in self.settings.to_watch:
            self._watch(name)
        for name in self.settings.to_run:
            self._handle_signals()
            if self.interrupted_by:
                break  # what is still pending becomes `skipped` at the end
            self._start(name)
        self._publish()
        self._next_heartbeat = self.clock.monotonic() + self.settings.heartbeat_seconds
        while True:
            self._handle_signals()
            now = self.clock.monotonic()
            self._poll_imds(now)
            self._reap()
            now = self.clock.monotonic()
            self._enforce_deadlines(now)
            if not self.active:
                break
            if now >= self._next_heartbeat:
                self._publish()
                self._next_heartbeat = now + self.settings.heartbeat_seconds
            self.signals.wait(self._next_wake(now) - now)

    def _next_wake(self, now: float) -> float:
        wake = min(now + self.settings.tick_seconds, self._next_heartbeat)
        if self.imds is not None:
            wake = min(wake, self._next_imds_poll)
        for active in self.active.values():
            if active.stop_reason is None and active.deadline is not None:
                wake = min(wake, active.deadline)
            if active.kill_at is not None and active.killed_at is None:
                wake = min(wake, active.kill_at)
        if self._run_deadline is not None and any(a.stop_reason is None for a in self.active.values()):
            wake = min(wake, self._run_deadline)
        # Never a zero wait: a deadline already acted on must not turn the loop into a spin.
        return max(wake, now + 0.01)

    def _start(self, name: str) -> None:
        job, record, settings = self.spec.job(name), self.state.jobs[name], self.settings
        log_path = job_log_path(settings.log_dir, settings.run_date, name)
        # `running` is on disk before the process exists: a crash in between reads as
        # `interrupted` later, never as "not started" (at most once).
        now = self.clock.now()
        record.status, record.started_at, record.ended_at = JOB_RUNNING, format_time(now), None
        record.exit_code, record.pid, record.process, record.log = None, None, None, log_path
        record.attempts += 1
        self._save()
        try:
            env = {**settings.base_env, **job.env, "RUN_DATE": settings.run_date, "ROLE": settings.role}
            header = (
                f"# fleet-agent: {format_time(now)} job {name} attempt {record.attempts} "
                f"for {settings.run_date}: {job.command()!r} in {job.cwd}\n"
            )
            handle = self.launcher.start(job, log_path=log_path, env=env, header=header)
        except Exception as error:  # LaunchError, or anything else: no process was started
            self._launch_failed(name, error)
            return
        started = self.clock.monotonic()
        # Supervised from here on, before anything else can fail: the process exists.
        self.active[name] = _Active(name, handle, self._deadline(job, started))
        record.pid, record.process = handle.pid, procinfo.identity(handle.pid)
        self._save()
        log.info("job %s started: pid %s, timeout %s, log %s", name, handle.pid, job.timeout, log_path)

    def _launch_failed(self, name: str, error: Exception) -> None:
        """The launcher raised: the job never ran, so it is ``failed`` (it runs again next time)."""
        record = self.state.jobs[name]
        if isinstance(error, LaunchError):
            record.exit_code, record.reason = error.exit_code, str(error)
            log.error("job %s: %s", name, error)
        else:  # not the launcher's own refusal: a bug, worth its traceback in the agent's log
            record.exit_code, record.reason = None, f"could not be started: {error_text(error)}"
            log.error("job %s could not be started", name, exc_info=error)
        record.status, record.pid, record.process = JOB_FAILED, None, None
        record.ended_at = format_time(self.clock.now())
        self._save()

    def _watch(self, name: str) -> None:
        record = self.state.jobs[name]
        handle = WatchedProcess(record.pid or 0, record.process)
        began = parse_utc(record.started_at)
        age = (self.clock.now() - began).total_seconds() if began else 0.0
        started = self.clock.monotonic() - max(0.0, age)
        self.active[name] = _Active(name, handle, self._deadline(self.spec.job(name), started))
        log.warning("job %s is still running from an earlier agent (pid %s): watching it", name, record.pid)

    def _deadline(self, job: JobSpec, started: float) -> float | None:
        return started + job.timeout if job.timeout else None

    def _reap(self) -> None:
        for name, active in list(self.active.items()):
            code = active.handle.poll()
            if code is not None:
                self._record_end(active, code)
            elif (
                active.killed_at is not None
                and self.clock.monotonic() - active.killed_at > _GIVE_UP_AFTER_KILL
            ):
                log.error("job %s (pid %s) survived SIGKILL; giving up on it", name, active.handle.pid)
                self._record_end(active, None, "did not exit after SIGKILL")

    def _record_end(self, active: _Active, code: object, note: str | None = None) -> None:
        del self.active[active.name]
        record = self.state.jobs[active.name]
        record.ended_at = format_time(self.clock.now())
        record.exit_code = code if isinstance(code, int) else None
        if code is EXIT_UNKNOWN:
            record.status = JOB_INTERRUPTED
            record.reason = "it outlived an earlier agent: ended while watched, exit code unknown"
        elif active.stop_reason in (STOP_TIMEOUT, STOP_MAX_RUNTIME):
            record.status, record.reason = JOB_TIMED_OUT, active.stop_detail
        elif active.stop_reason in (STOP_INTERRUPT, STOP_FAILURE):
            # It did start, and was cut short: maybe half done (re-run per rerun_on_interrupt).
            record.status, record.reason = JOB_INTERRUPTED, active.stop_detail
        elif code == 0:
            record.status, record.reason = JOB_SUCCEEDED, None
        else:
            record.status = JOB_FAILED
            exited = isinstance(code, int) and code >= 0
            record.reason = f"exited {code}" if exited else f"killed by {_signal_name(-code)}"
        if note:
            record.reason = f"{record.reason}; {note}" if record.reason else note
        self._save()
        level = logging.INFO if record.status == JOB_SUCCEEDED else logging.WARNING
        reason = f": {record.reason}" if record.reason else ""
        log.log(level, "job %s %s (exit %s)%s", active.name, record.status, record.exit_code, reason)
        if self.active:  # after the last job, the final report follows at once
            self._publish()

    def _enforce_deadlines(self, now: float) -> None:
        for active in list(self.active.values()):
            if active.stop_reason is None:
                if active.deadline is not None and now >= active.deadline:
                    timeout = self.spec.job(active.name).timeout
                    self._stop(active, STOP_TIMEOUT, f"timed out after {timeout:g} s", now)
                elif self._run_deadline is not None and now >= self._run_deadline:
                    detail = f"stopped: the run's max_runtime of {self.settings.max_runtime:g} s was reached"
                    self._stop(active, STOP_MAX_RUNTIME, detail, now)
            if active.kill_at is not None and active.killed_at is None and now >= active.kill_at:
                log.warning("job %s did not exit after SIGTERM: SIGKILL", active.name)
                active.handle.signal(signal.SIGKILL)
                active.killed_at = now

    def _stop(
        self, active: _Active, reason: str, detail: str, now: float, kill_at: float | None = None
    ) -> None:
        if kill_at is None:
            kill_at = now + self.settings.kill_grace_seconds
        if active.stop_reason is None:
            active.stop_reason, active.stop_detail = reason, detail
            log.warning("job %s: %s: SIGTERM to its process group", active.name, detail)
            active.handle.signal(signal.SIGTERM)
        if active.kill_at is None or kill_at < active.kill_at:
            active.kill_at = kill_at

    def _handle_signals(self) -> None:
        for signum in self.signals.take():
            if signum == signal.SIGCHLD:
                continue  # it only woke the loop; reaping happens in _reap
            name = _signal_name(signum)
            if self.interrupted_by is None:
                moment = format_time(self.clock.now())
                self._interrupt(f"{name} received", f"signal-{name}@{moment}")
            else:
                log.warning("%s received again: SIGKILL to every job now", name)
                now = self.clock.monotonic()
                for active in self.active.values():
                    active.kill_at = now
                self._enforce_deadlines(now)

    def _interrupt(self, reason: str, notice: str, deadline: datetime | None = None) -> None:
        now = self.clock.monotonic()
        kill_at = now + self.settings.kill_grace_seconds
        if deadline is not None:
            left = (deadline - self.clock.now()).total_seconds() - self.settings.flush_reserve_seconds
            kill_at = min(kill_at, now + max(0.0, left))
        if self.interrupted_by is not None:
            for active in self.active.values():
                self._stop(active, STOP_INTERRUPT, self.interrupted_by, now, kill_at)
            return
        self.interrupted_by = reason
        self.notice = notice
        log.critical("interruption: %s; stopping %d job(s)", reason, len(self.active))
        self.state.state = STATE_INTERRUPTED
        self.state.agent.interrupted_by = reason
        self._save()
        self._publish()
        for active in list(self.active.values()):
            self._stop(active, STOP_INTERRUPT, f"interrupted: {reason}", now, kill_at)

    def _poll_imds(self, now: float) -> None:
        if self.imds is None or now < self._next_imds_poll:
            return
        self._next_imds_poll = now + self.settings.imds_poll_seconds
        try:
            action = self.imds.spot_instance_action()
            rebalance = None if action else self.imds.rebalance_recommendation()
        except Exception as error:  # ImdsError, or anything else: notices are not worth the jobs
            if not self._imds_failures:
                log.warning("cannot poll IMDS for interruption notices: %s", error)
            self._imds_failures += 1
            # Back off (up to a minute): an unreachable IMDS costs a timeout per call, and the
            # loop must stay quick to notice a job's end.
            backoff = self.settings.imds_poll_seconds * 2 ** min(self._imds_failures, 6)
            self._next_imds_poll = now + min(60.0, max(self.settings.imds_poll_seconds, backoff))
            return
        if self._imds_failures:
            log.info("IMDS answers again")
            self._imds_failures = 0
        if action:
            when = str(action.get("time", ""))
            what = str(action.get("action", "unknown"))
            # Also when already interrupted (by SIGTERM): the notice's deadline may be sooner.
            self._interrupt(
                f"spot interruption notice: {what} at {when}", spot_notice(action), parse_utc(when)
            )
            return
        if rebalance and self.notice is None:
            when = str(rebalance.get("noticeTime", ""))
            self.notice = rebalance_notice(rebalance)
            self.state.agent.rebalance_recommendation = when
            self._save()
            log.warning("EC2 rebalance recommendation (%s): an interruption may follow; the jobs go on", when)
            self._publish()

    def _abort(self, error: Exception) -> None:
        """Supervision failed: stop what runs (SIGTERM, the grace, SIGKILL) and record it all.

        Uses nothing but the handles and the clock, not the loop that just failed (no signal
        pipe, no IMDS, no heartbeat).
        """
        self.failure = f"the agent failed: {error_text(error)}"
        log.critical(
            "%s; stopping %d job(s), then ending the run", self.failure, len(self.active), exc_info=error
        )
        self.state.agent.error = self.failure
        for name in self.settings.to_run:
            record = self.state.jobs[name]
            if record.status == JOB_RUNNING and name not in self.active:
                # Recorded `running` but no process was handed back: its launch never finished.
                self._launch_failed(name, error)
        now = self.clock.monotonic()
        for active in list(self.active.values()):
            self._quietly(self._stop, active, STOP_FAILURE, f"stopped: {self.failure}", now)
        turns = int((self.settings.kill_grace_seconds + _GIVE_UP_AFTER_KILL) / _ABORT_POLL_SECONDS) + 2
        for _ in range(turns):  # bounded in turns, not only in time: the clock may be the trouble
            now = self.clock.monotonic()
            for active in list(self.active.values()):
                code = self._quietly(active.handle.poll)
                if code is not None:
                    self._record_end(active, code)
                elif active.killed_at is None and active.kill_at is not None and now >= active.kill_at:
                    self._quietly(active.handle.signal, signal.SIGKILL)
                    active.killed_at = now
            if not self.active:
                return
            self._quietly(self.clock.sleep, _ABORT_POLL_SECONDS)
        for active in list(self.active.values()):
            log.error("job %s (pid %s) did not exit; giving up on it", active.name, active.handle.pid)
            self._record_end(active, None, "did not exit after SIGKILL")

    def _quietly(self, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except Exception:
            log.exception("while stopping the jobs after a failure")
            return None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
