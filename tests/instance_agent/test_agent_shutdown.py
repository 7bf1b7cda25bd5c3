"""Shutting down once the jobs are done: the OS command, StopInstances, or nothing."""

from __future__ import annotations

import pytest

from instance_agent.agent import OS_SHUTDOWN_COMMAND, shut_down


class TestShutDown:
    def test_os_mode_runs_the_os_shutdown(self):
        commands = []

        assert shut_down(
            "os",
            stop_instance=lambda: pytest.fail("no AWS call"),
            run_command=lambda c: commands.append(c) or True,
        )
        assert commands == [OS_SHUTDOWN_COMMAND] == [("shutdown", "-h", "now")]

    def test_ec2_mode_stops_the_own_instance(self):
        stops = []

        assert shut_down(
            "ec2",
            stop_instance=lambda: stops.append(1) or True,
            run_command=lambda c: pytest.fail("no OS command"),
        )
        assert stops == [1]

    def test_none_mode_does_nothing(self):
        assert shut_down(
            "none",
            stop_instance=lambda: pytest.fail("no AWS call"),
            run_command=lambda c: pytest.fail("no OS command"),
        )

    def test_a_failure_is_reported(self):
        assert shut_down("ec2", stop_instance=lambda: False) is False
        assert shut_down("os", stop_instance=lambda: True, run_command=lambda c: False) is False
