"""``RESULTS.md``: the benchmark's results as markdown tables, with the method and the targets.

The tables are data: the summary's, the targets' and the parse times' columns here (a header and
how to fill a cell), each size's rows in :mod:`bench.size_report`, all rendered by
:func:`~bench.size_report.table`. The method is ``bench/method.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench import size_report, stats
from bench.results import OURS, STOCK, BenchResults, ParseResult, SideResult, SizeResult
from bench.size_report import columns_table, short, standin, table

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


def _ms(values: list[float]) -> str:
    mid = stats.median(values)
    return "—" if mid is None else f"{mid:,.0f} ms (n={len(values)})"


def _parsed(cell: Callable[[ParseResult], str]) -> Callable[[ParseResult], str]:
    """A parse-time cell, empty when the parse was not measured (the tasks' cell says why)."""
    return lambda parse: "" if parse.error else cell(parse)


PARSE_COLUMNS: tuple[tuple[str, Callable[[ParseResult], str]], ...] = (
    ("roles", lambda p: str(p.roles)),
    ("fleet_daily tasks", lambda p: f"not measured: {short(p.error)}" if p.error else stats.number(p.tasks)),
    ("load_config + build_dag (median)", _parsed(lambda p: _ms(p.build_ms))),
    ("DagBag parse of dags/fleet_daily.py (median)", _parsed(lambda p: _ms(p.dagbag_ms))),
    ("first DagBag parse (imports included)", _parsed(lambda p: stats.number(p.dagbag_first_ms, 0) + " ms")),
    (
        "stock DAG: load_config + build (median)",
        _parsed(lambda p: f"{_ms(p.stock_build_ms)} ({stats.number(p.stock_tasks)} tasks)"),
    ),
)


def _idle_target(size: SizeResult, ours: SideResult) -> str:
    if standin(size):
        return "not assessed: the agent did not run at this size (stand-in)"
    top = stats.maximum(ours.idle_to_stopped)
    return _verdict(top is not None and top <= IDLE_TARGET, f"max {stats.seconds(top)}")


def _lag_target(size: SizeResult, ours: SideResult) -> str:
    bound, lag = ours.poll_interval + LAG_MARGIN, ours.signer_lag
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
    never = f"; never deferred: {', '.join(missing)}" if missing else ""
    return _verdict(not missing, f"seen deferred: {', '.join(ours.deferred_steps) or 'none'}{never}")


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


def _summary_idle(size: SizeResult, ours: SideResult, stock: SideResult) -> str:
    if standin(size):
        return "stand-in, not the agent"
    text = f"{stats.median_max(ours.idle_to_stopped)} vs {stats.median_max(stock.idle_to_stopped)}"
    return text + (f" vs {stats.median_max(size.model.idle, 0)} (model)" if size.model else "")


def _summary_lag(size: SizeResult, ours: SideResult, stock: SideResult) -> str:
    text = f"{stats.seconds(ours.signer_lag)} vs {stats.seconds(stock.signer_lag)}"
    return text + (f" vs {size_report.model_lag(size.model)} (model)" if size.model else "")


def _summary_calls(size: SizeResult, ours: SideResult, stock: SideResult) -> str:
    ratio = size_report.ratio_cell(ours.total_calls, stock.total_calls)
    return f"{ours.total_calls:,} vs {stock.total_calls:,} ({ratio})"


def _summary_slots(size: SizeResult, ours: SideResult, stock: SideResult) -> str:
    seconds = f"{stats.number(ours.slot_seconds, 0)} vs {stats.number(stock.slot_seconds, 0)}"
    return f"{seconds} (peak {stats.number(ours.slots_peak)} vs {stats.number(stock.slots_peak)})"


def _summary_probes(size: SizeResult, ours: SideResult, stock: SideResult) -> str:
    stock_probe = size_report.describe_probe(size_report.state_probe(size, STOCK))
    return f"{size_report.state_probe_cell(size, OURS)} vs {stock_probe}"


SUMMARY_COLUMNS = (
    ("workers", lambda size, ours, stock: str(size.workers)),
    ("worker idle to `stopped`, median / max: ours vs stock", _summary_idle),
    ("signer lag: ours vs stock", _summary_lag),
    (
        "overhead: ours vs stock",
        lambda size, o, s: f"{stats.seconds(o.overhead)} vs {stats.seconds(s.overhead)}",
    ),
    ("API calls per run: ours vs stock (ours/stock)", _summary_calls),
    ("state calls per poll round: ours vs stock", _summary_probes),
    ("worker slot-seconds: ours vs stock", _summary_slots),
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
    took = f", in {results.duration / 60:.1f} minutes" if results.duration is not None else ""
    parts = [
        "# Benchmark: fleet operators vs the provider's stock operators vs the old scripts",
        "",
        f"Generated by `{results.command}` on {results.started_at}{took}. Machine: {machine.get('cpus')} "
        f"CPUs, Python {machine.get('python')}, Airflow {machine.get('airflow')}, Amazon provider "
        f"{machine.get('amazon_provider')}. Every number was measured in this one run, on the fleet "
        "simulator, except the column *old scripts (model)*, which is computed (see Method). Ratios are "
        "ours / stock: below 1 means ours is lower.",
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
    parts += [part for size in results.sizes for part in ("", size_report.size_section(size))]
    parse = columns_table(PARSE_COLUMNS, [[p] for p in results.parse]) if results.parse else "not measured"
    return "\n".join([*parts, "", "## DAG parse time", "", parse]) + "\n"
