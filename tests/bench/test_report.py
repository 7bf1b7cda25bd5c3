"""RESULTS.md rendering: tables, ratios, verdicts, and what was not measured."""

from __future__ import annotations

from bench.old_scripts_model import JobSpan, model
from bench.report import render, table
from bench.results import OURS, STOCK, BenchResults, ParseResult, SideResult, SizeResult


def side(key: str, **values) -> SideResult:
    defaults = {
        "intervals": "every 5 s",
        "poll_interval": 5.0,
        "wall": 20.0,
        "longest_job": 5.0,
        "idle_to_stopping": [0.1, 0.2, 0.3],
        "idle_to_stopped": [0.6, 0.7, 0.8],
        "signer_lag": 3.0,
        "calls": {"DescribeInstances": 10, "StartInstances": 2},
        "calls_by_caller": {"Unknown": 12},
        "slots_peak": 1,
        "slot_seconds": 0.5,
        "slot_by_step": {"start": 0.5},
        "waiting_slot_seconds": 0.0,
        "deferred_seconds": 30.0,
        "deferred_steps": ["start_signer", "wait_running", "run_agent", "wait_stopped", "stop_signer"],
        "memory": {"flow process ru_maxrss": 300 * 1024},
    }
    defaults.update(values)
    return SideResult(key=key, **defaults)


def results() -> BenchResults:
    three = SizeResult(workers=3, method="in-process", host_program="agent")
    three.sides = {
        OURS: side(OURS),
        STOCK: side(
            STOCK,
            wall=40.0,
            signer_lag=6.0,
            calls={"DescribeInstances": 40},
            calls_by_caller={"EC2InstanceStateSensor": 40},
            slots_peak=3,
            slot_seconds=100.0,
            waiting_slot_seconds=90.0,
            deferred_steps=[],
        ),
    }
    three.probes = {
        OURS: {
            "instance_state.batched": {"DescribeInstances": 1},
            "instance_state.per_role": {"DescribeInstances": 3},
        },
        STOCK: {"instance_state.per_instance": {"DescribeInstances": 3}},
    }
    three.model = model([JobSpan(10, 15)] * 3)
    big = SizeResult(workers=300, method="in-process", host_program="stand-in")
    big.sides = {
        OURS: side(OURS, signer_lag=9.0),
        STOCK: side(STOCK, error="not measured: the flow did not finish in 900 s"),
    }
    big.model = model([JobSpan(10, 15)] * 300)
    broken = SizeResult(workers=30, method="in-process", host_program="agent", error="SimulatorError: boom")
    return BenchResults(
        command="python -m bench",
        started_at="2026-12-01 12:00 UTC",
        machine={"cpus": 2, "python": "3.11", "airflow": "3.3.2", "amazon_provider": "9.39.0"},
        job_seconds=5.0,
        poll_interval=5.0,
        sizes=[three, broken, big],
        parse=[
            ParseResult(
                roles=300, tasks=2102, build_ms=[1300, 1400, 1350], dagbag_first_ms=2000, dagbag_ms=[1400]
            ),
            ParseResult(roles=3, error="not measured: parsing did not finish in 600 s"),
        ],
        duration=600.0,
    )


def test_a_table_escapes_pipes_and_has_one_row_per_line():
    assert table(["a", "b"], [["x|y", "1"]]) == "| a | b |\n| --- | --- |\n| x\\|y | 1 |"


def test_each_size_gets_a_section_with_ratios_and_the_model():
    text = render(results())

    assert "## 3 workers" in text and "## 300 workers" in text and "## 30 workers" in text
    # Ratios ours / stock: signer lag 3 / 6, wall 20 / 40, calls 12 / 40.
    assert "| signer stop lag, last worker `stopped` → signer StopInstances | 3.0 s | 6.0 s |" in text
    assert "| 0.50x |" in text and "0.30x" in text
    # The model's idle for 3 workers with first sleeps 400/600/800 s: median 595, max 795.
    assert "595 / 795 s" in text
    assert "≤ 15 s (one Lambda poll)" in text
    assert "1 DescribeInstances" in text and "3 DescribeInstances" in text


def test_memory_rows_say_what_was_measured_with_their_notes():
    data = results()
    ours = data.sizes[0].sides[OURS]
    ours.memory["task processes alive at once, summed RSS (peak)"] = 600 * 1024
    ours.memory_notes["task processes alive at once, summed RSS (peak)"] = "up to 4 processes"

    text = render(data)

    assert "| peak memory: flow process ru_maxrss | 300 MB | 300 MB |" in text
    assert (
        "| peak memory: task processes alive at once, summed RSS (peak) | 600 MB (up to 4 processes) | — |"
        in text
    )


def test_what_was_not_measured_says_so_and_why():
    text = render(results())

    assert "**Not measured: SimulatorError: boom**" in text
    assert "not measured for the agent (stand-in: 0.2 / 0.3 s)" in text
    assert "no: not measured: the flow did not finish in 900 s" in text
    assert "not measured: parsing did not finish in 600 s" in text
    # A 300-worker fleet outlives the Lambda in the model: the signer is never stopped.
    assert "never: last worker stops at" in text


def test_targets_are_met_or_missed_from_the_numbers():
    text = render(results())
    targets = text.split("## Targets", 1)[1].split("## Method", 1)[0]

    assert (
        "| 3 workers | **met**: max 0.8 s | **met**: 3.0 s (bound 6 s) | **met**: one operator: 1;" in targets
    )
    assert (
        "| 300 workers | not assessed: the agent did not run at this size (stand-in) | **missed**: 9.0 s"
        in targets
    )
    assert "**met**: 0.0 slot-seconds asleep in a slot" in targets
    assert "Parse under 300 ms at 300 roles: **missed**: DagBag parse 1,400 ms" in targets
