"""The command line: help, bad input refused before anything starts, argv never shell-parsed,
and ``status``."""

from __future__ import annotations

import json
import sys

import pytest
from agent_testing import RUN_DATE


def _nothing_happened(agent) -> None:
    assert not agent.state_dir.exists(), "bad input must not write anything"
    assert not agent.log_dir.exists(), "bad input must not write anything"
    assert agent.count("trade") == 0


class TestHelp:
    def test_help_documents_the_commands_and_exit_codes(self, agent):
        completed = agent.cli("--help")

        assert completed.returncode == 0
        for text in ("run", "status", "exit codes", "already running", "corrupt"):
            assert text in completed.stdout

    def test_run_help_documents_the_options_and_the_spec(self, agent):
        completed = agent.cli("run", "--help")

        assert completed.returncode == 0
        for text in ("--role", "--date", "--spec", "--state-dir", "--log-dir", "--force", "--shutdown"):
            assert text in completed.stdout
        for key in ("argv", "cwd", "env", "timeout", "rerun_on_interrupt", "shell", "s3_log_prefix"):
            assert key in completed.stdout


class TestBadInput:
    @pytest.mark.parametrize(
        "bad_date",
        ["2026-11-23; rm -rf /", "2026-13-01", "2026-02-30", "20261123", "23/11/2026", "", "2026-11-23\n"],
    )
    def test_a_bad_date_is_refused(self, agent, bad_date):
        completed = agent.run(agent.spec([agent.counting_job("trade")]), date=bad_date)

        assert completed.returncode == 2
        assert "--date" in completed.stderr
        assert repr(bad_date) in completed.stderr
        assert completed.stdout == ""
        _nothing_happened(agent)

    def test_a_bad_role_is_refused(self, agent):
        completed = agent.run(agent.spec([agent.counting_job("trade")]), role="tasks; reboot")

        assert completed.returncode == 2
        assert "--role" in completed.stderr
        _nothing_happened(agent)

    @pytest.mark.parametrize(
        ("document", "message"),
        [
            (
                {"jobs": [{"name": "trade", "argv": ["x"], "rerun_on_interupt": True}]},
                "jobs[0]: unknown key 'rerun_on_interupt'",
            ),
            (
                {"jobs": [{"name": "trade", "argv": ["x"]}], "retries": 3},
                "(top level): unknown key 'retries'",
            ),
            (
                {"jobs": [{"name": "trade", "argv": ["x"]}, {"name": "trade", "argv": ["y"]}]},
                "jobs[1].name: duplicate job name 'trade'",
            ),
            (
                {"jobs": [{"name": "trade", "argv": "python run.py"}]},
                "jobs[0].argv: expected a non-empty list of strings, got 'python run.py'",
            ),
            (
                {"jobs": [{"name": "trade", "argv": ["a", "b"], "shell": True}]},
                "jobs[0].argv: a shell job takes exactly one string",
            ),
            (
                {"jobs": [{"name": "trade", "argv": ["x"], "timeout": "3h"}]},
                "jobs[0].timeout: expected a number of seconds, got '3h'",
            ),
            (
                {"jobs": [{"name": "trade", "argv": ["x"], "env": {"RUN_DATE": "2020-01-01"}}]},
                "jobs[0].env.RUN_DATE",
            ),
            ({"jobs": [{"name": "../etc", "argv": ["x"]}]}, "jobs[0].name: expected"),
            ({"jobs": []}, "jobs: expected a non-empty list"),
            (
                {"jobs": [{"name": "trade", "argv": ["x"]}], "s3_log_prefix": "bucket/logs"},
                "s3_log_prefix: expected s3://",
            ),
        ],
    )
    def test_a_bad_spec_is_refused_with_the_field_and_the_value(self, agent, document, message):
        spec = agent.root / "spec.json"
        spec.write_text(json.dumps(document))

        completed = agent.run(str(spec))

        assert completed.returncode == 2
        assert message in completed.stderr
        assert str(spec) in completed.stderr
        _nothing_happened(agent)

    def test_a_spec_that_is_no_json_is_refused(self, agent):
        completed = agent.run("-", input="[{'name': 'trade'}]")

        assert completed.returncode == 2
        assert "stdin" in completed.stderr
        assert "not valid JSON" in completed.stderr
        _nothing_happened(agent)

    def test_a_missing_spec_file_is_refused(self, agent):
        completed = agent.run(str(agent.root / "nope.json"))

        assert completed.returncode == 2
        assert "cannot read" in completed.stderr
        _nothing_happened(agent)

    def test_the_shutdown_mode_must_be_given(self, agent):
        command = [arg for arg in agent.command(agent.spec([agent.counting_job("trade")])) if arg != "none"]
        command.remove("--shutdown")

        completed = agent.cli(*command[3:])

        assert completed.returncode == 2
        assert "--shutdown" in completed.stderr
        _nothing_happened(agent)


class TestArgv:
    def test_shell_metacharacters_in_argv_are_passed_literally(self, agent):
        dump = agent.script(
            "dump.py", "import json, sys\nopen('argv.json', 'w').write(json.dumps(sys.argv[1:]))\n"
        )
        literal = [
            "; touch pwned1",
            "$(touch pwned2)",
            "`touch pwned3`",
            "a && touch pwned4",
            "| touch pwned5",
            "> pwned6",
            "*",
            "$HOME",
            "'\"\\",
            "line\nbreak",
        ]
        spec = agent.spec(
            [{"name": "dump", "argv": [sys.executable, dump, *literal], "cwd": str(agent.work)}]
        )

        completed = agent.run(spec)

        assert completed.returncode == 0, completed.stderr
        assert json.loads((agent.work / "argv.json").read_text()) == literal
        assert not list(agent.work.glob("pwned*"))

    def test_the_spec_can_come_from_stdin(self, agent):
        completed = agent.run("-", input=json.dumps([agent.counting_job("trade")]))

        assert completed.returncode == 0, completed.stderr
        assert agent.count("trade") == 1


class TestStatus:
    def test_status_prints_the_recorded_state(self, agent):
        agent.run(agent.spec([agent.counting_job("trade", exit_code=3)]))

        completed = agent.cli("status", "--state-dir", str(agent.state_dir), "--date", RUN_DATE)

        assert completed.returncode == 0
        document = json.loads(completed.stdout)
        assert document["state"] == "failed"
        assert document["jobs"]["trade"]["exit_code"] == 3
        assert document["agent_alive"] is False
        assert {key: document[key] for key in agent.state()} == agent.state()

    def test_status_without_a_date_shows_the_latest(self, agent):
        spec = agent.spec([agent.counting_job("trade")])
        agent.run(spec, date="2026-11-22")
        agent.run(spec, date="2026-11-23")

        completed = agent.cli("status", "--state-dir", str(agent.state_dir))

        assert json.loads(completed.stdout)["date"] == "2026-11-23"

    def test_status_of_a_date_never_run(self, agent):
        completed = agent.cli("status", "--state-dir", str(agent.state_dir), "--date", RUN_DATE)

        assert completed.returncode == 0
        assert json.loads(completed.stdout)["state"] is None

    def test_status_of_a_corrupt_file_fails(self, agent):
        agent.state_dir.mkdir()
        agent.state_path().write_text("garbage")

        completed = agent.cli("status", "--state-dir", str(agent.state_dir), "--date", RUN_DATE)

        assert completed.returncode == 3
        assert "corrupt" in completed.stderr
