from bench.pool_reference_model import run_reference


def test_concurrent_requests_double_allocate():
    outcome = run_reference([1.0] * 3, latency=0.5, boot_seconds=5)
    assert outcome.double_allocations == 2
    assert len(set(outcome.allocations.values())) == 1


def test_serial_requests_never_double_allocate():
    outcome = run_reference([1.0, 2.0, 3.0], latency=0.5, boot_seconds=5)
    assert outcome.double_allocations == 0
    assert len(set(outcome.allocations.values())) == 3


def test_refreshes_during_a_boot_overshoot():
    outcome = run_reference([1.0, 1.5, 2.0], latency=0.1, refresh_every=5, boot_seconds=30)
    assert outcome.overshoot > 0
    assert outcome.peak_desired > 3 + 5


def test_no_requests_no_growth():
    outcome = run_reference([], refresh_every=5, boot_seconds=30, horizon=60)
    assert outcome.overshoot == 0 and outcome.peak_desired == 5
