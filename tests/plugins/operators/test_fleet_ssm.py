"""Tests for operators.fleet_ssm, the SSM service layer: invocation outcomes, output tails, durations."""

from __future__ import annotations

import pytest
from operators.fleet_ssm import FAILED_STATUSES, duration_seconds, invocation_outcome, tail


class TestInvocationOutcome:
    @pytest.mark.parametrize(
        ("status", "details"),
        [
            ("Failed", "Failed"),
            ("Failed", "Undeliverable"),
            ("Failed", "Terminated"),
            ("Failed", "InvalidPlatform"),
            ("Failed", "AccessDenied"),
            ("Cancelled", "Cancelled"),
            ("TimedOut", "DeliveryTimedOut"),
            ("TimedOut", "ExecutionTimedOut"),
            ("DeliveryTimedOut", None),
            ("Undeliverable", None),
        ],
    )
    def test_terminal_failures(self, status, details):
        assert invocation_outcome(status, details) == "failed"

    @pytest.mark.parametrize("status", ["Pending", "InProgress", "Delayed", "Cancelling", "SomethingNew"])
    def test_still_waiting(self, status):
        assert invocation_outcome(status, None) == "waiting"

    def test_success_only_on_success(self):
        assert invocation_outcome("Success", "Success") == "success"
        assert all(invocation_outcome(status, None) != "success" for status in FAILED_STATUSES)


class TestHelpers:
    def test_tail_is_bounded_in_characters(self):
        assert len(tail("x" * 100_000, 5)) == 4000
        assert tail("", 5) == ""
        assert tail("a\nb\n", 0) == ""

    def test_duration_needs_both_ends(self):
        assert duration_seconds("2026-11-23T00:00:00Z", "2026-11-23T00:02:00.250Z") == pytest.approx(120.25)
        assert duration_seconds("2026-11-23T00:00:00Z", "") is None
        assert duration_seconds(None, None) is None
