"""The disk check before the jobs start."""

from __future__ import annotations

from instance_agent.agent import disk_warnings


def test_a_filesystem_over_the_threshold_is_a_warning(tmp_path):
    def usage(path):
        return (100 * 2**30, 85 * 2**30, 15 * 2**30)

    (warning,) = disk_warnings([str(tmp_path), str(tmp_path)], 80, usage=usage)  # one per filesystem

    assert warning == f"disk holding {tmp_path} is 85% full (warning above 80%), 15.0 GiB free"


def test_below_the_threshold_there_is_no_warning(tmp_path):
    assert disk_warnings([str(tmp_path)], 80, usage=lambda path: (100, 50, 50)) == []


def test_a_failing_check_is_a_warning_not_a_crash(tmp_path):
    assert "disk check of" in disk_warnings([str(tmp_path / "missing")], 80)[0]
