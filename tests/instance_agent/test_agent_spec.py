"""Spec and date validation: everything the DAG sends is checked before anything happens."""

from __future__ import annotations

import json

import pytest

from instance_agent.spec import SpecError, parse_spec, validate_date, validate_role


def _spec(**document):
    return parse_spec(json.dumps(document), "spec.json")


class TestRunSpec:
    def test_a_bare_list_of_jobs_gets_the_defaults(self):
        spec = parse_spec(json.dumps([{"name": "backoffice", "argv": ["/usr/bin/python3", "run.py"]}]))

        job = spec.jobs[0]
        assert (job.name, job.argv, job.cwd, job.env, job.timeout) == (
            "backoffice",
            ("/usr/bin/python3", "run.py"),
            "/",
            {},
            None,
        )
        assert job.shell is False
        assert job.rerun_on_interrupt is False  # at most once unless the job says otherwise
        assert (spec.heartbeat_seconds, spec.kill_grace_seconds, spec.disk_warn_percent) == (60, 30, 80)
        assert spec.s3_log_prefix is None

    def test_every_field_is_read(self):
        spec = _spec(
            jobs=[
                {
                    "name": "shield",
                    "argv": ["python", "valuate-and-run.py", "damm"],
                    "cwd": "/root/defilib",
                    "env": {"MODE": "live"},
                    "timeout": 10800,
                    "rerun_on_interrupt": True,
                }
            ],
            s3_log_prefix="s3://fleet-logs/daily",
            heartbeat_seconds=30,
            kill_grace_seconds=10,
            disk_warn_percent=90,
            max_runtime=14400,
        )

        job = spec.jobs[0]
        assert (job.cwd, job.env, job.timeout, job.rerun_on_interrupt) == (
            "/root/defilib",
            {"MODE": "live"},
            10800,
            True,
        )
        assert (
            spec.heartbeat_seconds,
            spec.kill_grace_seconds,
            spec.disk_warn_percent,
            spec.max_runtime,
        ) == (
            30,
            10,
            90,
            14400,
        )

    def test_a_shell_job_runs_its_one_string_through_sh(self):
        spec = _spec(jobs=[{"name": "legacy", "argv": ["./backoffice.sh >> out.log"], "shell": True}])

        assert spec.jobs[0].command() == ["/bin/sh", "-c", "./backoffice.sh >> out.log"]

    def test_a_plain_job_is_never_given_a_shell(self):
        spec = _spec(jobs=[{"name": "plain", "argv": ["echo", "$(reboot)"]}])

        assert spec.jobs[0].command() == ["echo", "$(reboot)"]

    def test_the_detached_supervisor_gets_the_same_spec_back(self):
        spec = _spec(jobs=[{"name": "a", "argv": ["x"], "timeout": 5}], s3_log_prefix="s3://b-1/p")

        assert parse_spec(json.dumps(spec.to_dict())) == spec

    @pytest.mark.parametrize(
        ("document", "message"),
        [
            ("nope", "expected a list of jobs or an object with 'jobs', got a string"),
            ({"jobs": [{"argv": ["x"]}]}, "jobs[0].name: missing"),
            ({"jobs": [{"name": "a"}]}, "jobs[0].argv: missing"),
            (
                {"jobs": [{"name": "a", "argv": []}]},
                "jobs[0].argv: expected a non-empty list of strings, got []",
            ),
            ({"jobs": [{"name": "a", "argv": ["x", 3]}]}, "jobs[0].argv[1]: expected a string, got 3"),
            ({"jobs": [{"name": "a", "argv": [""]}]}, "jobs[0].argv[0]: empty program name"),
            ({"jobs": [{"name": "a", "argv": ["x\u0000"]}]}, "jobs[0].argv[0]: NUL byte"),
            (
                {"jobs": [{"name": "a", "argv": ["x"], "cwd": "relative/dir"}]},
                "jobs[0].cwd: expected an absolute path, got 'relative/dir'",
            ),
            (
                {"jobs": [{"name": "a", "argv": ["x"], "env": {"1BAD": "x"}}]},
                "jobs[0].env: bad variable name '1BAD'",
            ),
            (
                {"jobs": [{"name": "a", "argv": ["x"], "env": {"N": 1}}]},
                "jobs[0].env.N: expected a string, got 1",
            ),
            (
                {"jobs": [{"name": "a", "argv": ["x"], "env": {"ROLE": "x"}}]},
                "jobs[0].env.ROLE: set by the agent",
            ),
            (
                {"jobs": [{"name": "a", "argv": ["x"], "timeout": True}]},
                "jobs[0].timeout: expected a number of seconds, got True",
            ),
            (
                {"jobs": [{"name": "a", "argv": ["x"], "timeout": 0}]},
                "jobs[0].timeout: must be positive, got 0",
            ),
            (
                {"jobs": [{"name": "a", "argv": ["x"], "shell": "yes"}]},
                "jobs[0].shell: expected true or false, got 'yes'",
            ),
            (
                {"jobs": [{"name": "a", "argv": ["x"], "rerun_on_interrupt": 1}]},
                "jobs[0].rerun_on_interrupt: expected true or false, got 1",
            ),
            ({"jobs": [{"name": "_agent", "argv": ["x"]}]}, "jobs[0].name: expected"),
            (
                {"jobs": [{"name": "a", "argv": ["x"]}], "heartbeat_seconds": 0},
                "heartbeat_seconds: must be at least 0.1, got 0",
            ),
            (
                {"jobs": [{"name": "a", "argv": ["x"]}], "disk_warn_percent": 120},
                "disk_warn_percent: expected a percentage between 0 and 100, got 120",
            ),
            (
                {"jobs": [{"name": "a", "argv": ["x"]}], "max_runtime": -1},
                "max_runtime: must be positive, got -1",
            ),
            (
                {
                    "jobs": [
                        {"name": "a", "argv": ["x"]},
                        {"name": "b", "argv": ["y"]},
                        {"name": "a", "argv": ["z"]},
                    ]
                },
                "jobs[2].name: duplicate job name 'a' (also jobs[0])",
            ),
        ],
    )
    def test_errors_name_the_field_and_the_value(self, document, message):
        with pytest.raises(SpecError) as caught:
            parse_spec(json.dumps(document), "spec.json")

        assert str(caught.value).startswith("spec.json: ")
        assert message in str(caught.value)

    def test_unknown_keys_list_the_allowed_ones(self):
        with pytest.raises(SpecError) as caught:
            _spec(jobs=[{"name": "a", "argv": ["x"], "timeout_seconds": 5}])

        assert (
            "jobs[0]: unknown key 'timeout_seconds' "
            "(allowed: argv, cwd, env, name, rerun_on_interrupt, shell, timeout)" in str(caught.value)
        )


class TestDateAndRole:
    @pytest.mark.parametrize("text", ["2026-11-23", "2024-02-29"])
    def test_calendar_dates_pass(self, text):
        assert validate_date(text) == text

    @pytest.mark.parametrize(
        "text",
        [
            "2026-11-23; rm -rf /",
            "2026-02-29",
            "2026-11-31",
            "2026-1-5",
            "26-11-23",
            "2026-11-23 ",
            "\uff12\uff10\uff12\uff16-11-23",  # full-width digits,
        ],
    )
    def test_anything_else_is_refused_with_the_value(self, text):
        with pytest.raises(SpecError) as caught:
            validate_date(text)

        assert repr(text) in str(caught.value)

    def test_roles_are_plain_names(self):
        assert validate_role("hyperliquid") == "hyperliquid"
        with pytest.raises(SpecError, match="--role"):
            validate_role("tasks/../etc")
