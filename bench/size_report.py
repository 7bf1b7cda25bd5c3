"""One fleet size's section of ``RESULTS.md``: its metrics table, slots by step, calls, poll rounds.

Every table is data: its rows (a :class:`Metric`: a name and how to fill each side's cell, the
old scripts' and the ratios) or its columns (a header and how to fill a cell), rendered by
:func:`table`. :mod:`bench.report` puts the sizes' sections into the whole document.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bench import stats
from bench.old_scripts_model import (
    FIRST_SLEEP_RANGE,
    LAMBDA_LIMIT_SECONDS,
    LAMBDA_POLL_SECONDS,
    PS_POLL_SECONDS,
    OldScriptsOutcome,
)
from bench.results import OURS, STOCK, STOCK_DEFAULTS, SideResult, SizeResult

NOT_IN_MODEL = "n/a (not modelled)"
NO_AIRFLOW = "n/a (no Airflow)"
SIDE_TITLES = {OURS: "ours", STOCK: "stock, same interval", STOCK_DEFAULTS: "stock, provider defaults"}


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(row) for row in rows)])


def columns_table(columns: Sequence[tuple[str, Callable[..., str]]], items: Iterable[Sequence[Any]]) -> str:
    """A table of one row per item: each column's header, and its cell from the item's values."""
    return table([header for header, _ in columns], [[cell(*item) for _, cell in columns] for item in items])


def short(text: str, limit: int = 90) -> str:
    first = text.strip().splitlines()[0] if text.strip() else text
    return first if len(first) <= limit else first[: limit - 1] + "…"


def ratio_cell(ours: float | None, other: float | None, floor: float = 0.0) -> str:
    """``ours / other``; below ``floor`` both values are noise and no ratio is shown."""
    if ours is not None and other is not None and max(ours, other) < floor:
        return f"≈ (both < {floor:g} s)"
    return stats.times(stats.ratio(ours, other))


def keys(mappings: Iterable[Iterable[str]]) -> list[str]:
    """The keys of several mappings, each once, in the order first seen."""
    return list(dict.fromkeys(key for mapping in mappings for key in mapping))


MODEL_POLLING = (
    f"first sleep {FIRST_SLEEP_RANGE[0]:.0f}-{FIRST_SLEEP_RANGE[1]:.0f} s, then `ps | grep` every "
    f"{PS_POLL_SECONDS:.0f} s; Lambda polls every {LAMBDA_POLL_SECONDS:.0f} s (assumed)"
)


def _model_idle(model: OldScriptsOutcome, stopped: bool = False) -> str:
    return stats.median_max(model.idle, digits=0) + (" (+ OS shutdown, not modelled)" if stopped else "")


def model_lag(model: OldScriptsOutcome) -> str:
    if model.signer_lag is None:
        return (
            f"never: last worker stops at {model.last_worker_stop:.0f} s, "
            f"the Lambda ends at {LAMBDA_LIMIT_SECONDS:.0f} s"
        )
    return f"≤ {LAMBDA_POLL_SECONDS:.0f} s (one Lambda poll)"


def _model_seconds(name: str) -> Callable[[OldScriptsOutcome], str]:
    def cell(model: OldScriptsOutcome) -> str:
        value = getattr(model, name)
        return "— (the signer is never stopped)" if value is None else stats.seconds(value, 0)

    return cell


def describe_probe(counts: dict[str, int] | None) -> str:
    if counts is None:
        return "not measured"
    return ", ".join(f"{count} {operation}" for operation, count in counts.items()) or "0 calls"


def state_probe(size: SizeResult, key: str) -> dict[str, int] | None:
    """One poll round of what ran: fleet_daily's per-role waits through Airflow, else one operator."""
    if key == OURS:
        shape = "per_role" if size.method == "airflow" else "batched"
        return size.probes.get(OURS, {}).get(f"instance_state.{shape}")
    return size.probes.get(STOCK, {}).get("instance_state.per_instance")


def state_probe_cell(size: SizeResult, key: str) -> str:
    text = describe_probe(state_probe(size, key))
    if key == OURS:
        shape = "fleet_daily as built" if size.method == "airflow" else "one operator over the fleet"
        return f"{text} ({shape})"
    return text


def _probe_total(counts: dict[str, int] | None) -> int | None:
    return None if counts is None else sum(counts.values())


PROBE_ROWS = (
    ("instance state (DescribeInstances)", "instance_state"),
    ("SSM agent online (DescribeInstanceInformation)", "ssm_online"),
)


def poll_rounds(size: SizeResult) -> str:
    ours, stock = size.probes.get(OURS, {}), size.probes.get(STOCK, {})
    rows = [
        [
            title,
            describe_probe(ours.get(f"{key}.batched")),
            describe_probe(ours.get(f"{key}.per_role")),
            describe_probe(stock.get(f"{key}.per_instance"))
            if f"{key}.per_instance" in stock
            else "no stock sensor",
        ]
        for title, key in PROBE_ROWS
    ]
    header = [
        f"calls for one poll round over all {size.workers} workers",
        "ours: one operator over the fleet",
        "ours: as fleet_daily is built (one task group per role)",
        "stock: one sensor per instance",
    ]
    return table(header, rows)


@dataclass(frozen=True)
class Metric:
    """A row of a size's table: each side's cell, the old scripts' cell, and the ratio's numbers."""

    name: str
    show: Callable[[SideResult, SizeResult], str]
    # A text, or the cell from the model ("—" without one).
    model: str | Callable[[OldScriptsOutcome], str]
    # The numbers of the ratio ours / stock; None: no ratio in this row.
    number: Callable[[SideResult, SizeResult], float | None] | None = None
    floor: float = 0.0
    # A side that failed says why instead of "—".
    guard: bool = True


def standin(size: SizeResult) -> bool:
    return size.host_program == "stand-in"


def _idle(name: str) -> Callable[[SideResult, SizeResult], str]:
    def cell(side: SideResult, size: SizeResult) -> str:
        text = stats.median_max(getattr(side, name))
        return f"not measured for the agent (stand-in: {text})" if standin(size) and text != "—" else text

    return cell


def _idle_max(name: str) -> Callable[[SideResult, SizeResult], float | None]:
    return lambda side, size: None if standin(size) else stats.maximum(getattr(side, name))


def _value(name: str) -> Callable[[SideResult, SizeResult], Any]:
    return lambda side, size: getattr(side, name)


def _number(name: str, digits: int = 0) -> Callable[[SideResult, SizeResult], str]:
    return lambda side, size: stats.number(getattr(side, name), digits)


def _seconds(name: str) -> Callable[[SideResult, SizeResult], str]:
    return lambda side, size: stats.seconds(getattr(side, name))


def _unknown(side: SideResult, size: SizeResult) -> None:
    return None


def _overhead(side: SideResult, size: SizeResult) -> str:
    return stats.seconds(side.overhead) + (f" (job {side.longest_job:.1f} s)" if side.longest_job else "")


def _waiting(side: SideResult, size: SizeResult) -> str:
    if side.waiting_slot_seconds is None:
        return "not measured in Airflow (see slot-seconds by step)"
    return stats.number(side.waiting_slot_seconds, 1)


METRICS = (
    Metric("flow finished", lambda s, z: "yes" if not s.error else f"no: {short(s.error)}", "—", guard=False),
    Metric("polling", lambda s, z: s.intervals, MODEL_POLLING, guard=False),
    Metric(
        "worker idle, last job end → `stopping` (median / max)",
        _idle("idle_to_stopping"),
        _model_idle,
        _idle_max("idle_to_stopping"),
        floor=1.0,
    ),
    Metric(
        "worker idle, last job end → `stopped` (median / max)",
        _idle("idle_to_stopped"),
        lambda model: _model_idle(model, stopped=True),
        _idle_max("idle_to_stopped"),
        floor=1.0,
    ),
    Metric(
        "job starts spread (first → last worker's job start)",
        _seconds("job_start_spread"),
        "same timeline as ours",
        _unknown,
    ),
    Metric(
        "signer stop lag, last worker `stopped` → signer StopInstances",
        _seconds("signer_lag"),
        model_lag,
        _value("signer_lag"),
    ),
    Metric("wall time, run start → signer stopped", _seconds("wall"), _model_seconds("wall"), _value("wall")),
    Metric(
        "orchestration overhead, wall - longest job",
        _overhead,
        _model_seconds("overhead"),
        _value("overhead"),
    ),
    Metric(
        "AWS API calls per run (Airflow's)",
        lambda s, z: stats.number(s.total_calls) if not s.error or s.calls else "—",
        NOT_IN_MODEL,
        _value("total_calls"),
    ),
    Metric(
        "instance-state calls per poll round, whole fleet",
        lambda s, z: state_probe_cell(z, s.key),
        "0 (each VM runs `ps | grep` itself)",
        lambda s, z: _probe_total(state_probe(z, s.key)),
    ),
    Metric("worker slots held at once (peak)", _number("slots_peak"), NO_AIRFLOW, _value("slots_peak")),
    Metric("worker slot-seconds held", _number("slot_seconds", 1), NO_AIRFLOW, _value("slot_seconds")),
    Metric(
        "worker slot-seconds spent waiting (asleep in a slot between polls)",
        _waiting,
        NO_AIRFLOW,
        _value("waiting_slot_seconds"),
    ),
    Metric("task-seconds waiting deferred (no slot)", _number("deferred_seconds", 1), NO_AIRFLOW, _unknown),
    Metric(
        "calls of the hosts (agent or stand-in), same window", _number("host_calls"), NOT_IN_MODEL, _unknown
    ),
)


def _memory(label: str) -> Metric:
    def cell(side: SideResult, size: SizeResult) -> str:
        if label not in side.memory:
            return "—"
        text, note = stats.megabytes(side.memory[label]), side.memory_notes.get(label)
        return f"{text} ({note})" if note and text != "—" else text

    return Metric(f"peak memory: {label}", cell, "n/a", guard=False)


def metric_row(metric: Metric, size: SizeResult, sides: list[SideResult]) -> list[str]:
    ours, stock, defaults = (size.sides.get(key) for key in (OURS, STOCK, STOCK_DEFAULTS))
    cells = [metric.name]
    for side in sides:
        text = metric.show(side, size)
        guarded = metric.guard and text == "—" and side.error
        cells.append(f"not measured: {short(side.error)}" if guarded else text)
    model = metric.model
    cells.append(model if isinstance(model, str) else "—" if size.model is None else model(size.model))
    others = [stock] if defaults is None else [stock, defaults]
    for other in others:
        if metric.number is None:
            cells.append("")
        elif ours is None or other is None:
            cells.append("—")
        else:
            cells.append(ratio_cell(metric.number(ours, size), metric.number(other, size), metric.floor))
    return cells


def size_section(size: SizeResult) -> str:
    sides = [size.sides[key] for key in (OURS, STOCK, STOCK_DEFAULTS) if key in size.sides]
    how = (
        "full DAG runs through real Airflow (scheduler, triggerer, DAG processor, API server)"
        if size.method == "airflow"
        else "operator level, in one process per flow (see Method)"
    )
    host = "a stand-in (sleep + curl StopInstances), not the agent" if standin(size) else "the real agent"
    took = f", measured in {size.seconds:.0f} s" if size.seconds is not None else ""
    parts = [
        f"## {size.workers} worker{'s' if size.workers != 1 else ''}",
        "",
        f"{how}; the hosts run {host}{took}.",
    ]
    if size.error:
        return "\n".join([*parts, "", f"**Not measured: {size.error}**"])
    header = ["metric", *(SIDE_TITLES[s.key] for s in sides), "old scripts (model)", "ours / stock"]
    if STOCK_DEFAULTS in size.sides:
        header.append("ours / stock defaults")
    metrics = [*METRICS, *(_memory(label) for label in keys(side.memory for side in sides))]
    parts += ["", table(header, [metric_row(metric, size, sides) for metric in metrics])]
    parts += ["", slots_by_step(sides), "", calls_by_operation(sides), "", poll_rounds(size)]
    notes = [f"{SIDE_TITLES[side.key]}: {note}" for side in sides for note in side.notes]
    notes += [f"{SIDE_TITLES[side.key]}: {side.error}" for side in sides if side.error]
    notes += (size.model.notes if size.model else []) + size.notes
    if notes:
        parts += ["", "Notes:", "", *(f"- {short(note, 400)}" for note in notes)]
    return "\n".join(parts)


def slots_by_step(sides: list[SideResult]) -> str:
    rows = [
        [step, *(stats.number(side.slot_by_step.get(step), 1) for side in sides)]
        for step in keys(side.slot_by_step for side in sides)
    ]
    rows.append(["deferred steps", *(", ".join(side.deferred_steps) or "none" for side in sides)])
    return table(["worker slot-seconds by step", *(SIDE_TITLES[side.key] for side in sides)], rows)


def calls_by_operation(sides: list[SideResult]) -> str:
    rows = [
        [operation, *(stats.number(side.calls.get(operation, 0)) for side in sides)]
        for operation in keys(side.calls for side in sides)
    ]
    rows.append(["**total**", *(f"**{side.total_calls:,}**" for side in sides)])
    callers = (
        ", ".join(f"{name} {count}" for name, count in s.calls_by_caller.items()) or "—" for s in sides
    )
    rows.append(["by caller", *callers])
    return table(["AWS API calls per run, by operation", *(SIDE_TITLES[side.key] for side in sides)], rows)
