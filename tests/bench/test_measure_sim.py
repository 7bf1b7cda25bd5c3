"""One tiny real measurement: two workers on the simulator, ours and stock, with the real agent."""

from __future__ import annotations

from bench.measure import measure_in_process
from bench.results import OURS, STOCK


def test_two_workers_ours_and_stock_measured_from_the_simulators_logs(tmp_path):
    # 3 s polls: the stock start operator's own wait must outlast the SSM registration (1 s after
    # `running`), since the provider has no sensor for the SSM agent (see bench/stock_dag.py).
    size = measure_in_process(
        2, workdir=tmp_path, job_seconds=1, poll_interval=3, host_program="agent", timeout=120
    )

    ours, stock = size.sides[OURS], size.sides[STOCK]
    assert size.error is None and ours.error is None and stock.error is None, (ours.notes, stock.notes)
    for side in (ours, stock):
        # Each agent stopped its own instance right after its job.
        assert len(side.idle_to_stopped) == 2 and all(v is not None and v < 5 for v in side.idle_to_stopped)
        assert side.signer_lag is not None and 0 <= side.signer_lag < 10
        assert side.longest_job is not None and side.longest_job >= 1
        assert side.calls["StartInstances"] >= 2 and side.calls["StopInstances"] >= 1
        assert side.host_calls > 0  # the agents' own calls are counted apart
        assert side.memory["flow process ru_maxrss"] > 50_000
    # One DescribeInstances reads both workers; the stock sensors need one each.
    assert size.probes[OURS]["instance_state.batched"] == {"DescribeInstances": 1}
    assert size.probes[OURS]["instance_state.per_role"] == {"DescribeInstances": 2}
    assert size.probes[STOCK]["instance_state.per_instance"] == {"DescribeInstances": 2}
    # Ours waits deferred; the stock operators sleep in their slots, two at once.
    assert ours.waiting_slot_seconds < 0.05 and ours.deferred_seconds > 1
    assert stock.waiting_slot_seconds > 1 and stock.slots_peak >= 2
    assert "wait_stopped" in ours.deferred_steps
    assert size.model is not None and len(size.model.idle) == 2
