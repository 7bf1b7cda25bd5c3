"""The per-date state file: atomic writes, strict reads, never an overwrite of what cannot be read."""

from __future__ import annotations

import json
import os

import pytest

from instance_agent.state import JobRecord, RunState, StateError, StateStore


def _document(**fields) -> str:
    return json.dumps({"format": 1, "date": "2026-11-23", "role": "tasks", "state": "running", **fields})


def _state() -> RunState:
    state = RunState(date="2026-11-23", role="tasks", state="failed")
    state.jobs["backoffice"] = JobRecord(
        status="succeeded", exit_code=0, attempts=1, started_at="2026-11-23T00:00:01.000Z"
    )
    state.jobs["shield"] = JobRecord(status="failed", exit_code=3, attempts=1)
    return state


class TestStateStore:
    def test_what_is_saved_is_read_back(self, tmp_path):
        store = StateStore(str(tmp_path))
        store.save(_state())

        loaded = store.load("2026-11-23")

        assert loaded == _state()
        assert os.listdir(tmp_path) == ["2026-11-23.json"]  # no temporary file left behind

    def test_no_file_means_no_state(self, tmp_path):
        assert StateStore(str(tmp_path)).load("2026-11-23") is None

    def test_a_failed_write_leaves_the_previous_file_whole(self, tmp_path, monkeypatch):
        store = StateStore(str(tmp_path))
        store.save(_state())
        before = (tmp_path / "2026-11-23.json").read_bytes()

        def broken_fsync(fd):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", broken_fsync)
        changed = _state()
        changed.state = "succeeded"
        with pytest.raises(OSError):
            store.save(changed)

        assert (tmp_path / "2026-11-23.json").read_bytes() == before
        assert os.listdir(tmp_path) == ["2026-11-23.json"]

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            ("", "not JSON"),
            ('{"format": 1, "date": "2026-11-23"', "not JSON"),
            ("[]", "expected a JSON object"),
            ('{"format": 7, "date": "2026-11-23", "role": "tasks", "state": "running"}', "unknown format 7"),
            (
                '{"format": 1, "date": "2026-11-24", "role": "tasks", "state": "running"}',
                "holds date '2026-11-24'",
            ),
            (
                _document(jobs={"a": {"status": "ok"}}),
                "unknown status 'ok'",
            ),
            (
                _document(jobs={"a": {"status": "failed", "exit_code": "3"}}),
                "exit_code: unexpected value '3'",
            ),
        ],
    )
    def test_a_corrupt_file_is_an_error_naming_the_file(self, tmp_path, content, message):
        path = tmp_path / "2026-11-23.json"
        path.write_text(content)

        with pytest.raises(StateError) as caught:
            StateStore(str(tmp_path)).load("2026-11-23")

        assert str(path) in str(caught.value)
        assert message in str(caught.value)
        assert path.read_text() == content

    def test_the_latest_date_is_found_among_other_files(self, tmp_path):
        store = StateStore(str(tmp_path))
        for date in ("2026-11-21", "2026-11-23", "2026-11-22"):
            (tmp_path / f"{date}.json").write_text("{}")
        (tmp_path / "agent.lock").write_text("")

        assert store.latest_date() == "2026-11-23"


class TestJobRecord:
    def test_a_rerun_keeps_the_earlier_attempt_in_history(self):
        record = JobRecord(status="interrupted", attempts=1, started_at="t0", reason="found running", pid=42)

        record.archive()

        assert (record.status, record.pid, record.started_at, record.attempts) == ("pending", None, None, 1)
        assert record.history == [
            {
                "status": "interrupted",
                "exit_code": None,
                "started_at": "t0",
                "ended_at": None,
                "reason": "found running",
            }
        ]

    def test_the_file_is_plain_json_a_human_can_read(self, tmp_path):
        store = StateStore(str(tmp_path))
        store.save(_state())

        document = json.loads((tmp_path / "2026-11-23.json").read_text())

        assert document["jobs"]["shield"]["exit_code"] == 3
        assert document["format"] == 1
