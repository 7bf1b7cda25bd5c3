"""``RESULTS.md``: the benchmark's results as markdown tables, with the method and the targets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bench import stats
from bench.old_scripts_model import (
    FIRST_SLEEP_RANGE,
    LAMBDA_LIMIT_SECONDS,
    LAMBDA_POLL_SECONDS,
    PS_POLL_SECONDS,
    OldScriptsOutcome,
)
from bench.results import OURS, STOCK, STOCK_DEFAULTS, BenchResults, ParseResult, SideResult, SizeResult

IDLE_TARGET = 2.0
PARSE_TARGET_MS = 300.0
PARSE_TARGET_ROLES = 300
LAG_MARGIN = 1.0
NOT_IN_MODEL = "n/a (not modelled)"

SIDE_TITLES = {
    OURS: "ours",
    STOCK: "stock, same interval",
    STOCK_DEFAULTS: "stock, provider defaults",
}


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(row) for row in rows)])


def _failed(side: SideResult | None) -> str | None:
    if side is None:
        return "not measured: not run"
    return None


def cell(side: SideResult | None, value: Callable[[SideResult], str]) -> str:
    missing = _failed(side)
    if missing:
        return missing
    text = value(side)
    if text == "—" and side.error:
        return f"not measured: {_short(side.error)}"
    return text


def _short(text: str, limit: int = 90) -> str:
    first = text.strip().splitlines()[0] if text.strip() else text
    return first if len(first) <= limit else first[: limit - 1] + "…"


def ratio_cell(ours: float | None, other: float | None, floor: float = 0.0) -> str:
    """``ours / other``; below ``floor`` both values are noise and no ratio is shown."""
    if ours is not None and other is not None and max(ours, other) < floor:
        return f"≈ (both < {floor:g} s)"
    return stats.times(stats.ratio(ours, other))


# -- one size ------------------------------------------------------------------------------------


def idle_cell(side: SideResult, values: list[float | None], standin: bool) -> str:
    text = stats.median_max(values)
    if standin and text != "—":
        return f"not measured for the agent (stand-in: {text})"
    return text


def describe_probe(counts: dict[str, int] | None) -> str:
    if counts is None:
        return "not measured"
    if not counts:
        return "0 calls"
    return ", ".join(f"{count} {operation}" for operation, count in counts.items())


def memory_rows(sides: list[SideResult]) -> list[list[str]]:
    labels: list[str] = []
    for side in sides:
        labels += [label for label in side.memory if label not in labels]
    rows = []
    for label in labels:
        rows.append(
            [
                f"peak memory: {label}",
                *(_memory_cell(side, label) for side in sides),
            ]
        )
    return rows


def _memory_cell(side: SideResult, label: str) -> str:
    if label not in side.memory:
        return "—"
    text = stats.megabytes(side.memory[label])
    note = side.memory_notes.get(label)
    return f"{text} ({note})" if note and text != "—" else text


def size_section(size: SizeResult, poll_interval: float) -> str:
    sides = [size.sides[key] for key in (OURS, STOCK, STOCK_DEFAULTS) if key in size.sides]
    ours, stock, defaults = size.sides.get(OURS), size.sides.get(STOCK), size.sides.get(STOCK_DEFAULTS)
    standin = size.host_program == "stand-in"
    model = size.model
    how = (
        "full DAG runs through real Airflow (scheduler, triggerer, DAG processor, API server)"
        if size.method == "airflow"
        else "operator level, in one process per flow (see Method)"
    )
    host = "the real agent" if not standin else "a stand-in (sleep + curl StopInstances), not the agent"
    took = f", measured in {size.seconds:.0f} s" if size.seconds is not None else ""
    parts = [f"## {size.workers} worker{'s' if size.workers != 1 else ''}", ""]
    parts.append(f"{how}; the hosts run {host}{took}.")
    if size.error:
        parts += ["", f"**Not measured: {size.error}**"]
        return "\n".join(parts)
    parts.append("")
    header = ["metric", *(f"{SIDE_TITLES[s.key]}" for s in sides), "old scripts (model)", "ours / stock"]
    if defaults is not None:
        header.append("ours / stock defaults")

    def row(
        name: str,
        value: Callable[[SideResult], str],
        model_text: str,
        number: Callable[[SideResult], Any],
        floor: float = 0.0,
    ):
        cells = [name, *(cell(side, value) for side in sides), model_text]
        cells.append(ratio_cell(number(ours), number(stock), floor) if ours and stock else "—")
        if defaults is not None:
            cells.append(ratio_cell(number(ours), number(defaults), floor) if ours else "—")
        return cells

    rows = [
        [
            "flow finished",
            *("yes" if not side.error else f"no: {_short(side.error)}" for side in sides),
            "—",
            "",
            *([""] if defaults is not None else []),
        ],
        ["polling", *(side.intervals for side in sides), _model_polling(), "", *([""] if defaults else [])],
        row(
            "worker idle, last job end → `stopping` (median / max)",
            lambda s: idle_cell(s, s.idle_to_stopping, standin),
            _model_idle(model),
            lambda s: None if s is None or standin else stats.maximum(s.idle_to_stopping),
            floor=1.0,
        ),
        row(
            "worker idle, last job end → `stopped` (median / max)",
            lambda s: idle_cell(s, s.idle_to_stopped, standin),
            _model_idle(model, stopped=True),
            lambda s: None if s is None or standin else stats.maximum(s.idle_to_stopped),
            floor=1.0,
        ),
        row(
            "job starts spread (first → last worker's job start)",
            lambda s: stats.seconds(s.job_start_spread),
            "same timeline as ours",
            lambda s: None,
        ),
        row(
            "signer stop lag, last worker `stopped` → signer StopInstances",
            lambda s: stats.seconds(s.signer_lag),
            _model_lag(model),
            lambda s: None if s is None else s.signer_lag,
        ),
        row(
            "wall time, run start → signer stopped",
            lambda s: stats.seconds(s.wall),
            _model_seconds(model, "wall"),
            lambda s: None if s is None else s.wall,
        ),
        row(
            "orchestration overhead, wall - longest job",
            lambda s: stats.seconds(s.overhead) + (f" (job {s.longest_job:.1f} s)" if s.longest_job else ""),
            _model_seconds(model, "overhead"),
            lambda s: None if s is None else s.overhead,
        ),
        row(
            "AWS API calls per run (Airflow's)",
            lambda s: stats.number(s.total_calls) if not s.error or s.calls else "—",
            NOT_IN_MODEL,
            lambda s: None if s is None else s.total_calls,
        ),
        row(
            "instance-state calls per poll round, whole fleet",
            lambda s: _state_probe_cell(size, s.key),
            "0 (each VM runs `ps | grep` itself)",
            lambda s: None if s is None else _probe_total(_state_probe(size, s.key)),
        ),
        row(
            "worker slots held at once (peak)",
            lambda s: stats.number(s.slots_peak),
            "n/a (no Airflow)",
            lambda s: None if s is None else s.slots_peak,
        ),
        row(
            "worker slot-seconds held",
            lambda s: stats.number(s.slot_seconds, 1),
            "n/a (no Airflow)",
            lambda s: None if s is None else s.slot_seconds,
        ),
        row(
            "worker slot-seconds spent waiting (asleep in a slot between polls)",
            lambda s: (
                stats.number(s.waiting_slot_seconds, 1)
                if s.waiting_slot_seconds is not None
                else "not measured in Airflow (see slot-seconds by step)"
            ),
            "n/a (no Airflow)",
            lambda s: None if s is None else s.waiting_slot_seconds,
        ),
        row(
            "task-seconds waiting deferred (no slot)",
            lambda s: stats.number(s.deferred_seconds, 1),
            "n/a (no Airflow)",
            lambda s: None,
        ),
        row(
            "calls of the hosts (agent or stand-in), same window",
            lambda s: stats.number(s.host_calls),
            NOT_IN_MODEL,
            lambda s: None,
        ),
    ]
    for memory in memory_rows(sides):
        rows.append([*memory, "n/a", "", *([""] if defaults else [])])
    parts.append(table(header, rows))
    parts += ["", slots_by_step(sides), "", calls_by_operation(sides), "", poll_rounds(size)]
    notes = [f"{SIDE_TITLES[side.key]}: {note}" for side in sides for note in side.notes]
    notes += [f"{SIDE_TITLES[side.key]}: {side.error}" for side in sides if side.error]
    notes += (model.notes if model else []) + size.notes
    if notes:
        parts += ["", "Notes:", "", *(f"- {_short(note, 400)}" for note in notes)]
    return "\n".join(parts)


def slots_by_step(sides: list[SideResult]) -> str:
    steps: list[str] = []
    for side in sides:
        steps += [step for step in side.slot_by_step if step not in steps]
    rows = [[step, *(stats.number(side.slot_by_step.get(step), 1) for side in sides)] for step in steps]
    rows.append(["deferred steps", *(", ".join(side.deferred_steps) or "none" for side in sides)])
    header = ["worker slot-seconds by step", *(SIDE_TITLES[side.key] for side in sides)]
    return table(header, rows)


def calls_by_operation(sides: list[SideResult]) -> str:
    operations: list[str] = []
    for side in sides:
        operations += [op for op in side.calls if op not in operations]
    rows = [[op, *(stats.number(side.calls.get(op, 0)) for side in sides)] for op in operations]
    rows.append(["**total**", *(f"**{side.total_calls:,}**" for side in sides)])
    rows.append(["by caller", *(_callers(side) for side in sides)])
    header = ["AWS API calls per run, by operation", *(SIDE_TITLES[side.key] for side in sides)]
    return table(header, rows)


def _callers(side: SideResult) -> str:
    return ", ".join(f"{caller} {count}" for caller, count in side.calls_by_caller.items()) or "—"


PROBE_ROWS = (
    ("instance state (DescribeInstances)", "instance_state"),
    ("SSM agent online (DescribeInstanceInformation)", "ssm_online"),
)


def poll_rounds(size: SizeResult) -> str:
    ours = size.probes.get(OURS, {})
    stock = size.probes.get(STOCK, {})
    rows = []
    for title, key in PROBE_ROWS:
        rows.append(
            [
                title,
                describe_probe(ours.get(f"{key}.batched")),
                describe_probe(ours.get(f"{key}.per_role")),
                describe_probe(stock.get(f"{key}.per_instance"))
                if f"{key}.per_instance" in stock
                else "no stock sensor",
            ]
        )
    header = [
        f"calls for one poll round over all {size.workers} workers",
        "ours: one operator over the fleet",
        "ours: as fleet_daily is built (one task group per role)",
        "stock: one sensor per instance",
    ]
    return table(header, rows)


def _state_probe(size: SizeResult, key: str) -> dict[str, int] | None:
    """One poll round of what ran: fleet_daily's per-role waits through Airflow, else one operator."""
    if key == OURS:
        shape = "per_role" if size.method == "airflow" else "batched"
        return size.probes.get(OURS, {}).get(f"instance_state.{shape}")
    return size.probes.get(STOCK, {}).get("instance_state.per_instance")


def _state_probe_cell(size: SizeResult, key: str) -> str:
    text = describe_probe(_state_probe(size, key))
    if key == OURS:
        shape = "fleet_daily as built" if size.method == "airflow" else "one operator over the fleet"
        return f"{text} ({shape})"
    return text


def _probe_total(counts: dict[str, int] | None) -> int | None:
    return None if counts is None else sum(counts.values())


def _model_polling() -> str:
    low, high = FIRST_SLEEP_RANGE
    return (
        f"first sleep {low:.0f}-{high:.0f} s, then `ps | grep` every {PS_POLL_SECONDS:.0f} s; "
        f"Lambda polls every {LAMBDA_POLL_SECONDS:.0f} s (assumed)"
    )


def _model_idle(model: OldScriptsOutcome | None, stopped: bool = False) -> str:
    if model is None:
        return "—"
    text = stats.median_max(model.idle, digits=0)
    return text + (" (+ OS shutdown, not modelled)" if stopped else "")


def _model_lag(model: OldScriptsOutcome | None) -> str:
    if model is None:
        return "—"
    if model.signer_lag is None:
        return (
            f"never: last worker stops at {model.last_worker_stop:.0f} s, "
            f"the Lambda ends at {LAMBDA_LIMIT_SECONDS:.0f} s"
        )
    return f"≤ {LAMBDA_POLL_SECONDS:.0f} s (one Lambda poll)"


def _model_seconds(model: OldScriptsOutcome | None, name: str) -> str:
    if model is None:
        return "—"
    value = getattr(model, name)
    if value is None:
        return "— (the signer is never stopped)"
    return stats.seconds(value, 0)


# -- parse times ---------------------------------------------------------------------------------


def parse_section(parse: list[ParseResult]) -> str:
    rows = []
    for result in parse:
        if result.error:
            rows.append([str(result.roles), f"not measured: {_short(result.error)}", "", "", "", ""])
            continue
        rows.append(
            [
                str(result.roles),
                stats.number(result.tasks),
                _ms(result.build_ms),
                _ms(result.dagbag_ms),
                stats.number(result.dagbag_first_ms, 0) + " ms",
                f"{_ms(result.stock_build_ms)} ({stats.number(result.stock_tasks)} tasks)",
            ]
        )
    header = [
        "roles",
        "fleet_daily tasks",
        "load_config + build_dag (median)",
        "DagBag parse of dags/fleet_daily.py (median)",
        "first DagBag parse (imports included)",
        "stock DAG: load_config + build (median)",
    ]
    return table(header, rows)


def _ms(values: list[float]) -> str:
    mid = stats.median(values)
    return "—" if mid is None else f"{mid:,.0f} ms (n={len(values)})"


# -- targets -------------------------------------------------------------------------------------


def targets(results: BenchResults) -> str:
    rows = []
    for size in results.sizes:
        ours = size.sides.get(OURS)
        if ours is None:
            continue
        name = f"{size.workers} workers"
        if size.host_program == "stand-in":
            idle = "not assessed: the agent did not run at this size (stand-in)"
        else:
            top = stats.maximum(ours.idle_to_stopped)
            idle = _verdict(top is not None and top <= IDLE_TARGET, f"max {stats.seconds(top)}")
        lag_bound = ours.poll_interval + LAG_MARGIN
        lag = _verdict(
            ours.signer_lag is not None and ours.signer_lag <= lag_bound,
            f"{stats.seconds(ours.signer_lag)} (bound {lag_bound:g} s)",
        )
        probe = size.probes.get(OURS, {}).get("instance_state.batched")
        per_role = size.probes.get(OURS, {}).get("instance_state.per_role")
        describe = (probe or {}).get("DescribeInstances")
        one = _verdict(
            describe == 1,
            f"one operator: {describe if describe is not None else '—'}; fleet_daily as built: "
            f"{(per_role or {}).get('DescribeInstances', '—')} (one per role)",
        )
        slots = _slots_verdict(ours)
        rows.append([name, idle, lag, one, slots])
    header = [
        "size",
        f"worker idle ≤ {IDLE_TARGET:g} s (to `stopped`)",
        "signer lag ≤ poll interval + 1 s",
        "one DescribeInstances per poll (≤ 1000 instances)",
        "no worker slot held while waiting",
    ]
    parts = [table(header, rows)]
    parse = next((p for p in results.parse if p.roles == PARSE_TARGET_ROLES and not p.error), None)
    if parse is not None:
        build, dagbag = stats.median(parse.build_ms), stats.median(parse.dagbag_ms)
        parts += [
            "",
            f"- Parse under {PARSE_TARGET_MS:g} ms at {PARSE_TARGET_ROLES} roles: "
            + _verdict(
                dagbag is not None and dagbag < PARSE_TARGET_MS,
                f"DagBag parse {stats.number(dagbag)} ms, load_config + build_dag {stats.number(build)} ms",
            ),
        ]
    else:
        parts += [
            "",
            f"- Parse under {PARSE_TARGET_MS:g} ms at {PARSE_TARGET_ROLES} roles: not measured in this run",
        ]
    return "\n".join(parts)


# The waits of fleet_daily that cannot be over at their first poll (an instance takes time to boot and
# stop, a command to run); wait_ssm_online may find the agents online at once and not defer.
MUST_DEFER = ("start_signer", "wait_running", "run_agent", "wait_stopped", "stop_signer")


def _slots_verdict(ours: SideResult) -> str:
    if ours.error:
        return f"not assessed: {_short(ours.error)}"
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


def _verdict(ok: bool, detail: str) -> str:
    return f"{'**met**' if ok else '**missed**'}: {detail}"


# -- summary -------------------------------------------------------------------------------------


def summary(results: BenchResults) -> str:
    rows = []
    for size in results.sizes:
        ours, stock = size.sides.get(OURS), size.sides.get(STOCK)
        if ours is None or stock is None:
            rows.append(
                [str(size.workers), f"not measured: {size.error or 'a flow is missing'}", "", "", "", "", ""]
            )
            continue
        standin = size.host_program == "stand-in"
        model = size.model
        idle = (
            "stand-in, not the agent"
            if standin
            else f"{stats.median_max(ours.idle_to_stopped)} vs {stats.median_max(stock.idle_to_stopped)}"
            + (f" vs {stats.median_max(model.idle, 0)} (model)" if model else "")
        )
        rows.append(
            [
                str(size.workers),
                idle,
                f"{stats.seconds(ours.signer_lag)} vs {stats.seconds(stock.signer_lag)}"
                + (f" vs {_model_lag(model)} (model)" if model else ""),
                f"{stats.seconds(ours.overhead)} vs {stats.seconds(stock.overhead)}",
                f"{ours.total_calls:,} vs {stock.total_calls:,} "
                f"({ratio_cell(ours.total_calls, stock.total_calls)})",
                f"{_state_probe_cell(size, OURS)} vs {describe_probe(_state_probe(size, STOCK))}",
                f"{stats.number(ours.slot_seconds, 0)} vs {stats.number(stock.slot_seconds, 0)} "
                f"(peak {stats.number(ours.slots_peak)} vs {stats.number(stock.slots_peak)})",
            ]
        )
    header = [
        "workers",
        "worker idle to `stopped`, median / max: ours vs stock",
        "signer lag: ours vs stock",
        "overhead: ours vs stock",
        "API calls per run: ours vs stock (ours/stock)",
        "state calls per poll round: ours vs stock",
        "worker slot-seconds: ours vs stock",
    ]
    return table(header, rows)


METHOD = """\
## Method

- **Fleet**: a signer and N worker roles, one instance each, every worker running one
  `fleet_sim.demo_job` of {job:g} s, on `fleet_sim.FleetSimulator` (moto + SSM emulation; instances
  take 0.5 s per transition, SSM registers 1 s after `running`). All numbers of one size come from
  the same simulator, flows one after the other, each on its own run date (the agent runs a date's
  jobs once).
- **ours**: the project's operators (`FleetStartInstancesOperator`, `FleetInstanceStateSensor`,
  `FleetSsmAgentOnlineSensor`, `FleetRunCommandOperator`, `FleetStopInstancesOperator`),
  deferrable, waits polling every {poll:g} s (the fleet config's `poll_interval`; its default is 30 s).
- **stock**: `bench/stock_dag.py`, the same flow from the provider's `EC2StartInstanceOperator`,
  `SsmRunCommandOperator`, `EC2InstanceStateSensor` (`stopped`) per instance and
  `EC2StopInstanceOperator` for the signer, as a user would write it. *stock, provider defaults*
  keeps every default (start/stop poll every 15 s, the SSM wait every 120 s, the sensor pokes every
  60 s, all in worker slots); *stock, same interval* sets the three intervals to {poll:g} s, so that
  time-based rows compare the operators rather than their defaults. Calls per poll round, slots
  held and memory do not depend on the interval; lags and overheads scale with it. The provider has
  no sensor for the SSM agent: `run_agent` works because the start operator's own wait outlasts the
  simulator's 1 s SSM registration (at a 1 s interval it did not: `InvalidInstanceId`); on AWS a
  user would add retries.
- **old scripts (model)**: not measured; computed by `bench/old_scripts_model.py` from the
  reference's constants on the job timeline measured for *ours* at the same size: each worker shuts
  down at the first `ps | grep` check after its job ended (first sleep spread evenly over 300-900 s
  across the workers, since the reference gives one value per instance without saying which; then
  every 300 s); the Lambda stops the signer at its first poll after the last worker stopped (every
  15 s, boto3's `instance_stopped` waiter: an assumption), unless its 15 minutes ran out first. OS
  shutdown time and `ps | grep` false matches are not modelled.
- **Full runs (Airflow)**: at the sizes marked so, `fleet_demo.harness.AirflowHarness` runs real
  Airflow 3 (LocalExecutor, parallelism 8, SQLite) against the simulator: `dags/fleet_daily.py`
  unchanged, and the stock DAGs. A task in `running` holds a worker slot, one in `deferred` does
  not: a task that never deferred held its slot from its start to its end (exact, from the API);
  the running time of one that deferred is sampled from its states every 0.5-1 s (short stretches
  between two samples are missed).
- **Operator level (in-process)**: at larger sizes, full Airflow runs of hundreds of tasks do not
  fit a 2-core machine in minutes. Each flow runs in a child process (`bench/flow_child.py`): a
  task's `execute` runs in a thread and counts as a held worker slot; a `TaskDeferred` hands its
  trigger to an asyncio loop (the triggerer) and frees the slot; the event resumes the task. *ours*
  runs one task per step over all N workers (one batched operator, as the operators allow;
  `fleet_daily` itself builds one task group per role, see the poll-round tables); *stock* runs N
  chains `start → run_agent → wait_stopped` at once (one thread per chain: as many slots as Airflow
  would need to run them all at once). `skip_if_done` and `report` are left out (one
  DescribeInstances and no AWS call per role). The flow's boto3 clients share one botocore loader
  (no AWS call changes; a real task process loads the EC2 model once, ~0.3 s of CPU).
- **Host program**: the real agent (`python3 -m instance_agent run ... --shutdown ec2`, the command
  `fleet_daily` sends) at the sizes marked so. At larger sizes a stand-in: it reads its instance ID
  from IMDS, runs `sleep` detached for the job's length and stops its own instance with one
  StopInstances (curl): hundreds of real agents starting at once overload the single-process
  simulator on 2 cores (at 100 agents, their IMDS calls timed out after 2 s and they could not stop
  their instances). The orchestration sees the same shape; the worker-idle row is then not an agent
  measurement.
- **Worker idle**: the host's record of its last job's end (the agent's state file, or the
  stand-in's) → the instance's `stopping` (billing ends) and `stopped` (+0.5 s simulated
  transition) in the simulator's timeline. **Signer lag**: last worker `stopped` → the signer's
  `stopping` (the moment its StopInstances was answered). **Wall**: run start → the signer's stop
  task done (Airflow: the DAG run's start and end; in-process: the flow's). **Overhead**: wall - the
  longest job.
- **API calls**: the simulator's log of every call answered, counting those whose user agent names
  Airflow (`Caller/<operator>`; a hook made inside a trigger says `Unknown`); the agents' calls are
  counted apart. **Per poll round**: each side polls the whole fleet's state once the way its wait
  does, and the calls made in that window are counted.
- **Memory**: in-process, `ru_maxrss` of the child process running the flow (all its operators and
  triggers; not the simulator; the poll-round probes run in a process of their own). Through
  Airflow, `VmHWM` (peak RSS) of Airflow's task processes (`airflow worker -- <task id>`: one per
  running task, forked from a LocalExecutor worker), the largest of them, and the largest sum over
  task processes alive at one sample, sampled from `/proc` every 0.25 s; for ours also the
  triggerer's trigger process. At operator level all N stock chains share one process; under
  Airflow each of them would be a task process of its own (see the size measured through Airflow).
- **DAG parse time**: `bench/parse_time.py` in a fresh interpreter per size, with `FLEET_CONFIG`
  pointing at a generated config: `load_config()` + `build_dag()`, and a real `DagBag` parse of
  `dags/fleet_daily.py` (median of the repeats; the first parse, which also imports the modules,
  apart).
- **Noise**: other processes shared the machine's 2 cores during the run (the test suites of other
  work in the same tree); timings are single runs, not averages over runs. Where *ours* sends one
  command to every worker at once, all agents start and end together and compete for the 2 cores
  and the single-process simulator (their stop calls queue); *stock* starts them spread out (see
  the job-start spread row), which favours its worker-idle numbers on this machine."""


def method(results: BenchResults) -> str:
    return METHOD.format(poll=results.poll_interval, job=results.job_seconds)


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
        method(results),
    ]
    for size in results.sizes:
        parts += ["", size_section(size, results.poll_interval)]
    parts += ["", "## DAG parse time", "", parse_section(results.parse) if results.parse else "not measured"]
    return "\n".join(parts) + "\n"
