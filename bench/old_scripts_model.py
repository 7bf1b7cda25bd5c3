"""The old system's timing, computed from its constants: a model, not a measurement (``bench/method.md``).

The old system (docs/architecture.md, "What it replaces"): on each worker ``apagarServer*.sh`` sleeps
a first 300-900 s (one value per instance), then runs ``ps | grep NAME`` every 300 s and shuts down
once the jobs are gone; the Lambda waits for the workers to stop, then stops the signer, and lives
at most 15 minutes. What the scripts do not fix is assumed, and named in the report: which first sleep
each instance has (spread evenly over the range), how often the Lambda polls for ``stopped`` (15 s,
boto3's ``instance_stopped`` waiter), and no time for the OS shutdown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

FIRST_SLEEP_RANGE = (300.0, 900.0)
PS_POLL_SECONDS = 300.0
LAMBDA_LIMIT_SECONDS = 900.0
LAMBDA_POLL_SECONDS = 15.0


@dataclass(frozen=True)
class JobSpan:
    """One worker's job, in seconds from the run's start."""

    start: float
    end: float

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"a job cannot end ({self.end}) before it starts ({self.start})")


@dataclass(frozen=True)
class OldScriptsOutcome:
    first_sleeps: list[float]
    worker_stops: list[float]  # seconds from the run's start
    idle: list[float]  # per worker: job end -> shutdown
    last_worker_stop: float
    # When the Lambda stops the signer; None when it has timed out before the last worker stopped.
    signer_stop: float | None
    signer_lag: float | None
    wall: float | None
    overhead: float | None
    longest_job: float
    notes: list[str] = field(default_factory=list)


def spread_first_sleeps(count: int) -> list[float]:
    """``count`` first sleeps spread evenly over the range (the midpoints of ``count`` equal slices)."""
    if count < 1:
        raise ValueError(f"need at least one worker, got {count!r}")
    low, high = FIRST_SLEEP_RANGE
    return [low + (high - low) * (index + 0.5) / count for index in range(count)]


def shutdown_time(job: JobSpan, first_sleep: float, ps_poll: float = PS_POLL_SECONDS) -> float:
    """When ``apagarServer*.sh`` shuts the worker down: the first check at or after the job's end.

    It starts with the job, sleeps ``first_sleep``, then checks every ``ps_poll`` seconds.
    """
    first_check = job.start + first_sleep
    if job.end <= first_check:
        return first_check
    return first_check + ps_poll * math.ceil((job.end - first_check) / ps_poll)


def signer_stop_time(
    last_worker_stop: float,
    wait_started: float,
    lambda_poll: float = LAMBDA_POLL_SECONDS,
    lambda_limit: float = LAMBDA_LIMIT_SECONDS,
) -> float | None:
    """The Lambda's first poll at or after the last worker stopped, or ``None`` past its limit."""
    polls = max(0, math.ceil((last_worker_stop - wait_started) / lambda_poll))
    polled = wait_started + polls * lambda_poll
    return polled if polled <= lambda_limit else None


def model(jobs: Sequence[JobSpan], first_sleeps: Sequence[float] | None = None) -> OldScriptsOutcome:
    """The old scripts on this job timeline (one job per worker, times from the run's start)."""
    if not jobs:
        raise ValueError("the model needs at least one worker's job")
    sleeps = list(spread_first_sleeps(len(jobs)) if first_sleeps is None else first_sleeps)
    if len(sleeps) != len(jobs):
        raise ValueError(f"{len(sleeps)} first sleeps for {len(jobs)} workers")
    stops = [shutdown_time(job, sleep) for job, sleep in zip(jobs, sleeps, strict=True)]
    last_stop = max(stops)
    # The Lambda waits for "stopped" once it has sent the last command (when the last job started).
    signer_stop = signer_stop_time(last_stop, max(job.start for job in jobs))
    longest = max(job.end - job.start for job in jobs)
    notes = []
    if signer_stop is None:
        notes.append(
            f"the last worker stops {last_stop:.0f} s after the start, past the Lambda's "
            f"{LAMBDA_LIMIT_SECONDS:.0f} s limit: nothing stops the signer"
        )
    return OldScriptsOutcome(
        first_sleeps=sleeps,
        worker_stops=stops,
        idle=[stop - job.end for stop, job in zip(stops, jobs, strict=True)],
        last_worker_stop=last_stop,
        signer_stop=signer_stop,
        signer_lag=None if signer_stop is None else signer_stop - last_stop,
        wall=signer_stop,
        overhead=None if signer_stop is None else signer_stop - longest,
        longest_job=longest,
        notes=notes,
    )
