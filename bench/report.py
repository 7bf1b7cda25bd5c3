"""``RESULTS.md``: the benchmark's results as markdown tables, with the method and the targets.

The tables are data: the summary's, the targets' and the parse times' columns here (a header and
how to fill a cell), each size's rows in :mod:`bench.size_report`; :func:`~bench.size_report.table`
renders them all. The method is ``bench/method.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench import stats
from bench.results import OURS, STOCK, BenchResults, ParseResult, SideResult, SizeResult
from bench.size_report import (
    columns_table,
    describe_probe,
    model_lag,
    ratio_cell,
    short,
    size_section,
    standin,
    state_probe,
    state_probe_cell,
    table,
)

__all__ = ["render", "table"]

IDLE_TARGET = 2.0
PARSE_TARGET_MS = 300.0
PARSE_TARGET_ROLES = 300
LAG_MARGIN = 1.0
METHOD = Path(__file__).with_name("method.md")
# The waits of fleet_daily that cannot be over at their first poll (an instance takes time to boot and
# stop, a command to run); wait_ssm_online may find the agents online at once and not defer.
MUST_DEFER = ("start_signer", "wait_running", "run_agent", "wait_stopped", "stop_signer")


def _verdict(ok: bool, detail: str) -> str:
    return f"{'**met**' if ok else '**missed**'}: {detail}"


# -- parse times -----------------------------------------------------------------------------------


def _ms(values: list[float]) -> str:
    mid = stats.median(values)
    return "—" if mid is None else f"{mid:,.0f} ms (n={len(values)})"


PARSE_COLUMNS: tuple[tuple[str, Callable[[ParseResult], str]], ...] = (
    ("roles", lambda p: str(p.roles)),
    ("fleet_daily tasks", lambda p: f"not measured: {short(p.error)}" if p.error else stats.number(p.tasks)),
    ("load_config + build_dag (median)", lambda p: "" if p.error else _ms(p.build_ms)),
    ("DagBag parse of dags/fleet_daily.py (median)", lambda p: "" if p.error else _ms(p.dagbag_ms)),
    (
        "first DagBag parse (imports included)",
        lambda p: "" if p.error else stats.number(p.dagbag_first_ms, 0) + " ms",
    ),
    (
        "stock DAG: load_config + build (median)",
        lambda p: "" if p.error else f"{_ms(p.stock_build_ms)} ({stats.number(p.stock_tasks)} tasks)",
    ),
)


# -- targets ---------------------------------------------------------------------------------------


def _idle_target(size: SizeResult, ours: SideResult) -> str:
    if standin(size):
        return "not assessed: the agent did not run at this size (stand-in)"
    top = stats.maximum(ours.idle_to_stopped)
    return _verdict(top is not None and top <= IDLE_TARGET, f"max {stats.seconds(top)}")


def _lag_target(size: SizeResult, ours: SideResult) -> str:
    bound = ours.poll_interval + LAG_MARGIN
    lag = ours.signer_lag
    return _verdict(lag is not None and lag <= bound, f"{stats.seconds(lag)} (bound {bound:g} s)")


def _poll_target(size: SizeResult, ours: SideResult) -> str:
    probes = size.probes.get(OURS, {})
    describe = (probes.get("instance_state.batched") or {}).get("DescribeInstances")
    per_role = (probes.get("instance_state.per_role") or {}).get("DescribeInstances", "—")
    one = describe if describe is not None else "—"
    return _verdict(describe == 1, f"one operator: {one}; fleet_daily as built: {per_role} (one per role)")


def _slots_target(size: SizeResult, ours: SideResult) -> str:
    if ours.error:
        return f"not assessed: {short(ours.error)}"
    if ours.waiting_slot_seconds is not None:
        return _verdict(
            ours.waiting_slot_seconds < 0.05,
            f"{ours.waiting_slot_seconds:.1f} slot-seconds asleep in a slot; "
            f"{stats.number(ours.deferred_seconds, 0)} task-seconds deferred",
        )
    missing = [step for step in MUST_DEFER if step not in ours.deferred_steps]
    return _verdict(
        not missing,
        f"seen deferred: {', '.join(ours.deferred_steps) or 'none'}"
        + (f"; never deferred: {', '.join(missing)}" if missing else ""),
    )


TARGET_COLUMNS = (
    ("size", lambda size, ours: f"{size.workers} workers"),
    (f"worker idle ≤ {IDLE_TARGET:g} s (to `stopped`)", _idle_target),
    ("signer lag ≤ poll interval + 1 s", _lag_target),
    ("one DescribeInstances per poll (≤ 1000 instances)", _poll_target),
    ("no worker slot held while waiting", _slots_target),
)


def targets(results: BenchResults) -> str:
    sized = [(size, size.sides[OURS]) for size in results.sizes if OURS in size.sides]
    parse = next((p for p in results.parse if p.roles == PARSE_TARGET_ROLES and not p.error), None)
    line = f"- Parse under {PARSE_TARGET_MS:g} ms at {PARSE_TARGET_ROLES} roles: "
    if parse is None:
        line += "not measured in this run"
    else:
        build, dagbag = stats.median(parse.build_ms), stats.median(parse.dagbag_ms)
        line += _verdict(
            dagbag is not None and dagbag < PARSE_TARGET_MS,
            f"DagBag parse {stats.number(dagbag)} ms, load_config + build_dag {stats.number(build)} ms",
        )
    return "\n".join([columns_table(TARGET_COLUMNS, sized), "", line])


# -- summary ---------------------------------------------------------------------------------------


def _summary_idle(size: SizeResult, ours: SideResult, stock: SideResult) -> str:
    if standin(size):
        return "stand-in, not the agent"
    text = f"{stats.median_max(ours.idle_to_stopped)} vs {stats.median_max(stock.idle_to_stopped)}"
    return text + (f" vs {stats.median_max(size.model.idle, 0)} (model)" if size.model else "")


def _summary_lag(size: SizeResult, ours: SideResult, stock: SideResult) -> str:
    text = f"{stats.seconds(ours.signer_lag)} vs {stats.seconds(stock.signer_lag)}"
    return text + (f" vs {model_lag(size.model)} (model)" if size.model else "")


SUMMARY_COLUMNS = (
    ("workers", lambda size, ours, stock: str(size.workers)),
    ("worker idle to `stopped`, median / max: ours vs stock", _summary_idle),
    ("signer lag: ours vs stock", _summary_lag),
    (
        "overhead: ours vs stock",
        lambda size, ours, stock: f"{stats.seconds(ours.overhead)} vs {stats.seconds(stock.overhead)}",
    ),
    (
        "API calls per run: ours vs stock (ours/stock)",
        lambda size, o, s: (
            f"{o.total_calls:,} vs {s.total_calls:,} ({ratio_cell(o.total_calls, s.total_calls)})"
        ),
    ),
    (
        "state calls per poll round: ours vs stock",
        lambda size, o, s: f"{state_probe_cell(size, OURS)} vs {describe_probe(state_probe(size, STOCK))}",
    ),
    (
        "worker slot-seconds: ours vs stock",
        lambda size, o, s: (
            f"{stats.number(o.slot_seconds, 0)} vs {stats.number(s.slot_seconds, 0)} "
            f"(peak {stats.number(o.slots_peak)} vs {stats.number(s.slots_peak)})"
        ),
    ),
)


def summary(results: BenchResults) -> str:
    rows = []
    for size in results.sizes:
        ours, stock = size.sides.get(OURS), size.sides.get(STOCK)
        if ours is None or stock is None:
            missing = f"not measured: {size.error or 'a flow is missing'}"
            rows.append([str(size.workers), missing, *[""] * (len(SUMMARY_COLUMNS) - 2)])
        else:
            rows.append([cell(size, ours, stock) for _, cell in SUMMARY_COLUMNS])
    return table([header for header, _ in SUMMARY_COLUMNS], rows)


def render(results: BenchResults) -> str:
    machine = results.machine
    parts = [
        "# Benchmark: fleet operators vs the provider's stock operators vs the old scripts",
        "",
        f"Generated by `{results.command}` on {results.started_at}"
        + (f", in {results.duration / 60:.1f} minutes" if results.duration is not None else "")
        + f". Machine: {machine.get('cpus')} CPUs, Python {machine.get('python')}, Airflow "
        f"{machine.get('airflow')}, Amazon provider {machine.get('amazon_provider')}. Every number was "
        "measured in this one run, on the fleet simulator, except the column *old scripts (model)*, "
        "which is computed (see Method). Ratios are ours / stock: below 1 means ours is lower.",
        "",
        "## Summary",
        "",
        summary(results),
        "",
        "## Targets",
        "",
        targets(results),
        "",
        METHOD.read_text().format(poll=results.poll_interval, job=results.job_seconds).rstrip("\n"),
    ]
    parts += [part for size in results.sizes for part in ("", size_section(size))]
    parse = columns_table(PARSE_COLUMNS, [[p] for p in results.parse]) if results.parse else "not measured"
    return "\n".join([*parts, "", "## DAG parse time", "", parse]) + "\n"
