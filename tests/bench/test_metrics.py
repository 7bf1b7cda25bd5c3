"""Metrics from the simulator's timeline and API call log."""

from __future__ import annotations

import pytest

from bench import metrics


def state(t, instance, to):
    return {"t": t, "instance_id": instance, "event": "state", "to": to}


EVENTS = [
    state(0.0, "i-w1", "pending"),
    state(1.0, "i-w1", "running"),
    state(9.0, "i-w1", "stopping"),
    state(9.5, "i-w1", "stopped"),
    state(1.0, "i-w2", "running"),
    state(12.0, "i-w2", "stopping"),
    state(12.5, "i-w2", "stopped"),
    state(2.0, "i-sig", "stopping"),  # an earlier stop, before the workers: not the one that counts
    state(15.5, "i-sig", "stopping"),
]


class TestWorkerIdle:
    def test_idle_runs_from_the_jobs_end_to_the_next_stopping_and_stopped(self):
        stopping, stopped = metrics.worker_idle(EVENTS, "i-w1", job_end=8.6)

        assert stopping == pytest.approx(0.4)
        assert stopped == pytest.approx(0.9)

    def test_a_worker_that_never_stopped_after_its_job_has_no_idle(self):
        assert metrics.worker_idle(EVENTS, "i-w1", job_end=10.0) == (None, None)

    def test_an_unknown_job_end_has_no_idle(self):
        assert metrics.worker_idle(EVENTS, "i-w1", None) == (None, None)


class TestSignerLag:
    def test_from_the_last_worker_stopped_to_the_signers_next_stopping(self):
        assert metrics.signer_lag(EVENTS, "i-sig", ["i-w1", "i-w2"], since=0.5) == pytest.approx(3.0)

    def test_unknown_while_a_worker_has_not_stopped(self):
        assert metrics.signer_lag(EVENTS, "i-sig", ["i-w1", "i-w3"], since=0.5) is None

    def test_changes_before_since_do_not_count(self):
        assert metrics.signer_lag(EVENTS, "i-sig", ["i-w1"], since=10.0) is None


CALLS = [
    {"t": 1.0, "operation": "DescribeInstances", "caller": "FleetInstanceStateSensor"},
    {"t": 1.5, "operation": "DescribeInstances", "caller": "Unknown"},
    {"t": 2.0, "operation": "StopInstances", "caller": None},  # the agent
    {"t": 2.5, "operation": "StartInstances", "caller": "FleetStartInstancesOperator"},
    {"t": 9.0, "operation": "DescribeInstances", "caller": "Unknown"},
    {"t": 3.0, "operation": None, "service": "s3", "caller": "airflow"},
]


def test_only_airflows_calls_in_the_window_count_by_operation_and_caller():
    calls = metrics.orchestration_calls(CALLS, since=1.0, until=9.0)

    assert metrics.by_operation(calls) == {"DescribeInstances": 2, "StartInstances": 1, "s3": 1}
    assert metrics.by_caller(calls) == {
        "FleetInstanceStateSensor": 1,
        "FleetStartInstancesOperator": 1,
        "Unknown": 1,
        "airflow": 1,
    }


def test_probe_windows_count_their_own_calls():
    probes = [{"probe": "a", "started": 0.9, "ended": 1.6}, {"probe": "b", "started": 8.0, "ended": 8.5}]

    assert metrics.probe_counts(CALLS, probes) == {"a": {"DescribeInstances": 2}, "b": {}}


def test_task_state_samples_integrate_to_slots_running_and_deferred():
    samples = [
        (0.0, {"a.start": "running", "b.start": "running"}),
        (1.0, {"a.start": "success", "b.start": "running", "a.wait": "deferred"}),
        (3.0, {"a.start": "success", "b.start": "success", "a.wait": "running"}),
        (3.5, {"a.start": "success", "b.start": "success", "a.wait": "success"}),
    ]

    slots = metrics.integrate_states(samples)

    assert slots.peak_running == 2
    assert slots.deferred_seconds == pytest.approx(2.0)
    assert slots.running_by_task == {
        "a.start": pytest.approx(1.0),
        "b.start": pytest.approx(3.0),
        "a.wait": pytest.approx(0.5),
    }


def test_a_task_that_never_deferred_held_its_slot_for_its_whole_duration():
    sampled = {"w1.run_agent": 3.0, "w1.wait_stopped": 1.0}
    durations = {"w1.run_agent": 120.5, "w1.wait_stopped": 40.0, "w1.start": 2.0}

    by_task = metrics.slot_seconds_by_task(sampled, durations, deferred={"w1.wait_stopped"})

    assert by_task == {"w1.run_agent": 120.5, "w1.wait_stopped": 1.0, "w1.start": 2.0}
    assert (
        metrics.step_of("w1.wait_stopped") == "wait_stopped"
        and metrics.step_of("stop_signer") == "stop_signer"
    )
