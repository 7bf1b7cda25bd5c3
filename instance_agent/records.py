"""How the supervisor records a run: the state file, the tags, the final upload.

:class:`RunRecords` is a mixin of :class:`~instance_agent.supervisor.Supervisor`: the loop
decides what happens to the jobs, this writes it down. Every write is best effort and never
raises: losing the jobs would be worse than a stale record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from instance_agent.clock import format_time
from instance_agent.display import one_line
from instance_agent.protocol import (
    AGENT_LOG_NAME,
    JOB_PENDING,
    JOB_RUNNING,
    JOB_SKIPPED,
    JOB_SUCCEEDED,
    STATE_FAILED,
    STATE_FILE_NAME,
    STATE_INTERRUPTED,
    STATE_RUNNING,
    STATE_SUCCEEDED,
    AgentReport,
    agent_log_path,
    job_log_name,
    job_log_path,
    job_outcome,
    parse_utc,
)
from instance_agent.spec import RunSpec
from instance_agent.state import RunState, StateStore

log = logging.getLogger("instance_agent")


def error_text(error: BaseException) -> str:
    """``UnicodeEncodeError: ...``, on one line and short enough for a record's reason."""
    return one_line(f"{type(error).__name__}: {error}", 300)


@dataclass
class SupervisorResult:
    state: str  # protocol.STATE_*, never "running"
    interrupted_by: str | None = None


class RunRecords:
    # Set by Supervisor.__init__.
    settings: Any  # supervisor.SupervisorSettings
    spec: RunSpec
    state: RunState
    store: StateStore
    clock: Any
    reporter: Any
    interrupted_by: str | None
    notice: str | None
    failure: str | None

    def _finish_run(self) -> SupervisorResult:
        for name in self.settings.to_run:
            record = self.state.jobs[name]
            if record.status == JOB_PENDING:  # it never started: `skipped`, never `interrupted`
                record.status = JOB_SKIPPED
                why = self.interrupted_by or self.failure or "the agent stopped first"
                record.reason = f"not started: {why}"
        final = self._final_state()
        self.state.state = final
        self.state.agent.ended_at = format_time(self.clock.now())
        self._save()
        log.info("run for %s finished: %s (%s)", self.settings.run_date, final, self._progress())
        try:
            self.reporter.publish(self._report(final))
            if not self.reporter.flush(max(5.0, min(30.0, self.settings.flush_reserve_seconds))):
                log.warning("final tags not confirmed in time")
        except Exception:
            log.exception("cannot write the final tags; the state file holds the outcome")
        try:
            uploaded = self.reporter.upload(self._uploads())
            if uploaded:
                reporter = self.reporter
                log.info(
                    "uploaded %d file(s) to s3://%s/%s", len(uploaded), reporter.s3_bucket, reporter.s3_prefix
                )
        except Exception:
            log.exception("cannot upload the logs")
        return SupervisorResult(final, self.interrupted_by)

    def _uploads(self) -> list[tuple[str, str]]:
        log_dir, run_date = self.settings.log_dir, self.settings.run_date
        uploads = [
            (job_log_path(log_dir, run_date, name), job_log_name(name)) for name in self.spec.job_names
        ]
        uploads.append((agent_log_path(log_dir, run_date), AGENT_LOG_NAME))
        uploads.append((self.store.path(run_date), STATE_FILE_NAME))
        return uploads

    def _final_state(self) -> str:
        if self.interrupted_by:
            return STATE_INTERRUPTED
        records = [self.state.jobs.get(name) for name in self.spec.job_names]
        if all(record is not None and record.status == JOB_SUCCEEDED for record in records):
            return STATE_SUCCEEDED
        return STATE_FAILED

    def _progress(self) -> str:
        statuses = [self.state.jobs[name].status for name in self.spec.job_names if name in self.state.jobs]
        ended = [status for status in statuses if status not in (JOB_PENDING, JOB_RUNNING)]
        return f"{len(ended)}/{len(self.spec.jobs)}"

    def _report(self, agent_state: str | None = None) -> AgentReport:
        now = self.clock.now()
        outcomes: dict[str, object] = {}
        durations: dict[str, int] = {}
        for name in self.spec.job_names:
            record = self.state.jobs.get(name)
            if record is None:
                continue
            outcomes[name] = job_outcome(record.status, record.exit_code)
            began, ended = parse_utc(record.started_at), parse_utc(record.ended_at)
            if began is not None and (ended is not None or record.status == JOB_RUNNING):
                durations[name] = max(0, int(((ended or now) - began).total_seconds()))
        if agent_state is None:
            agent_state = STATE_INTERRUPTED if self.interrupted_by else STATE_RUNNING
        return AgentReport(
            role=self.settings.role,
            run_date=self.settings.run_date,
            state=agent_state,
            heartbeat=now,
            progress=self._progress(),
            jobs=outcomes,
            durations=durations,
            notice=self.notice,
        )

    def _publish(self) -> None:
        try:
            self.reporter.publish(self._report())
        except Exception:  # a heartbeat is not worth the jobs
            log.exception("cannot publish the progress tags")

    def _save(self) -> None:
        try:
            self.store.save(self.state)
        except Exception as error:
            log.error("cannot write the state file %s: %s", self.store.path(self.settings.run_date), error)
