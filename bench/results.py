"""What a benchmark run found: plain dataclasses the measurements fill and the report renders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.old_scripts_model import OldScriptsOutcome
from bench.stats import elapsed

OURS = "ours"
STOCK = "stock"
STOCK_DEFAULTS = "stock_defaults"


@dataclass
class SideResult:
    """One flow (ours or stock) at one fleet size, as measured."""

    key: str
    intervals: str
    poll_interval: float  # the interval its state waits poll at (the signer-lag target uses it)
    error: str | None = None
    wall: float | None = None
    longest_job: float | None = None
    # First job start → last job start: how far apart the workers got their work.
    job_start_spread: float | None = None
    idle_to_stopping: list[float | None] = field(default_factory=list)
    idle_to_stopped: list[float | None] = field(default_factory=list)
    signer_lag: float | None = None
    calls: dict[str, int] = field(default_factory=dict)  # orchestration calls by operation
    calls_by_caller: dict[str, int] = field(default_factory=dict)
    host_calls: int = 0  # calls of the agents (or stand-ins) in the same window
    slots_peak: int | None = None
    slot_seconds: float | None = None
    slot_by_step: dict[str, float] = field(default_factory=dict)
    # Slot-seconds spent sleeping between polls (in-process only: Airflow runs cannot see it).
    waiting_slot_seconds: float | None = None
    deferred_seconds: float | None = None
    # The steps that waited deferred (in the triggerer) at least once.
    deferred_steps: list[str] = field(default_factory=list)
    # What was measured, in kB, under a name that says what it is.
    memory: dict[str, int | None] = field(default_factory=dict)
    memory_notes: dict[str, str] = field(default_factory=dict)
    # Each worker's job, in seconds from the flow's start (the old-scripts model's timeline).
    job_spans: list[tuple[float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def overhead(self) -> float | None:
        return elapsed(self.longest_job, self.wall)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


@dataclass
class SizeResult:
    """Everything measured at one fleet size."""

    workers: int
    method: str  # "airflow" (full DAG runs) or "in-process" (operator level)
    host_program: str  # "agent" or "stand-in"
    sides: dict[str, SideResult] = field(default_factory=dict)
    # side -> probe -> {operation: calls} for one poll round over the whole fleet
    probes: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    model: OldScriptsOutcome | None = None
    seconds: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class ParseResult:
    """DAG parse times for one number of roles (milliseconds)."""

    roles: int
    tasks: int | None = None
    build_ms: list[float] = field(default_factory=list)
    dagbag_first_ms: float | None = None
    dagbag_ms: list[float] = field(default_factory=list)
    stock_tasks: int | None = None
    stock_build_ms: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass
class BenchResults:
    command: str
    started_at: str
    machine: dict[str, Any]
    job_seconds: float
    poll_interval: float
    sizes: list[SizeResult] = field(default_factory=list)
    parse: list[ParseResult] = field(default_factory=list)
    duration: float | None = None
