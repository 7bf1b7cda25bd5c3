"""The fleet config: the shipped fleet.yaml, FLEET_CONFIG, and errors that name file, field and value."""

from __future__ import annotations

import copy
import re
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from fleet_dag.config import (
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_PATH,
    FleetConfigError,
    load_config,
    parse_config,
)
from fleet_dag_testing import DAGS_FOLDER, fleet_dict, write_yaml
from fleet_testing import role_named
from operators.config_files import parse_duration

SIGNER = "i-0000000000000000a"
WORKER = "i-0000000000000000b"


def _set(path: str, value):
    """A mutation of fleet_dict(): set the value at a dotted path (``roles.0.jobs.1.name``)."""

    def mutate(data):
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return mutate


def _duplicate_role(data):
    data["roles"].append(copy.deepcopy(data["roles"][0]) | {"instance": "i-0000000000000000c"})


def _duplicate_job(data):
    data["roles"][0]["jobs"].append(copy.deepcopy(data["roles"][0]["jobs"][0]))


INVALID = [
    # (id, mutation, field path, bad value as the error shows it)
    ("short-instance-id", _set("signer.instance", "i-123"), "signer.instance", "'i-123'"),
    (
        "upper-case-id",
        _set("roles.0.instance", "i-0000000000000000B"),
        "roles[0].instance",
        "'i-0000000000000000B'",
    ),
    (
        "not-an-instance",
        _set("roles.0.instance", "vol-0123456789abcdef0"),
        "roles[0].instance",
        "'vol-0123456789abcdef0'",
    ),
    ("bad-candidate", _set("roles.0.candidates", ["i-zz"]), "roles[0].candidates[0]", "'i-zz'"),
    ("duplicate-role", _duplicate_role, "roles[1].name", "'tasks'"),
    ("duplicate-job", _duplicate_job, "roles[0].jobs[2].name", "'backoffice'"),
    ("unknown-top-key", _set("colour", "red"), "colour", "'red'"),
    ("unknown-job-key", _set("roles.0.jobs.0.timout", "1h"), "roles[0].jobs[0].timout", "'1h'"),
    ("bad-cron", _set("schedule", "0 25 * * *"), "schedule", "'0 25 * * *'"),
    ("cron-words", _set("schedule", "every midnight"), "schedule", "'every midnight'"),
    ("unknown-timezone", _set("timezone", "Europe/Atlantis"), "timezone", "'Europe/Atlantis'"),
    ("duration-words", _set("roles.0.max_runtime", "4 hours"), "roles[0].max_runtime", "'4 hours'"),
    ("duration-zero", _set("roles.0.max_runtime", "0s"), "roles[0].max_runtime", "'0s'"),
    ("duration-negative", _set("roles.0.jobs.1.timeout", -5), "roles[0].jobs[1].timeout", "-5"),
    ("duration-bool", _set("roles.0.jobs.0.timeout", True), "roles[0].jobs[0].timeout", "True"),
    ("bad-poll-interval", _set("poll_interval", "1d"), "poll_interval", "'1d'"),
    ("role-without-jobs", _set("roles.0.jobs", []), "roles[0].jobs", "[]"),
    ("no-roles", _set("roles", []), "roles", "[]"),
    ("relative-cwd", _set("roles.0.jobs.0.cwd", "backoffice"), "roles[0].jobs[0].cwd", "'backoffice'"),
    ("empty-argv", _set("roles.0.jobs.0.argv", []), "roles[0].jobs[0].argv", "[]"),
    ("bad-s3-prefix", _set("s3_log_prefix", "bucket/logs"), "s3_log_prefix", "'bucket/logs'"),
    (
        "instance-and-candidates",
        _set("roles.0.candidates", ["i-0000000000000000c"]),
        "roles[0]",
        "instance 'i-0000000000000000b' and candidates ['i-0000000000000000c']",
    ),
    ("signer-as-worker", _set("roles.0.instance", SIGNER), "roles[0].instance", repr(SIGNER)),
    (
        "signer-as-candidate",
        _set(
            "roles.0",
            {
                "name": "tasks",
                "candidates": ["i-0000000000000000c", SIGNER],
                "max_runtime": "1h",
                "jobs": [{"name": "a", "argv": ["true"], "timeout": 60}],
            },
        ),
        "roles[0].candidates[1]",
        repr(SIGNER),
    ),
]


class TestParseConfig:
    def test_small_fleet_is_valid(self):
        config = parse_config(fleet_dict(), "fleet.yaml")
        role = role_named(config, "tasks")
        assert role.instance_ids == [WORKER]
        assert role.heartbeat_grace == timedelta(minutes=5)
        assert [job.timeout for job in role.jobs] == [timedelta(minutes=30), timedelta(seconds=600)]
        # At most once unless the config says a re-run is safe: these jobs move money.
        assert [job.rerun_on_interrupt for job in role.jobs] == [False, False]

    @pytest.mark.parametrize(
        ("mutate", "field", "value"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID]
    )
    def test_invalid_config_names_file_field_and_value(self, tmp_path, mutate, field, value):
        data = fleet_dict()
        mutate(data)
        path = write_yaml(tmp_path / "bad-fleet.yaml", data)

        with pytest.raises(FleetConfigError) as error:
            load_config(path)

        lines = str(error.value).splitlines()
        assert lines[0] == f"{path}: invalid fleet config"
        # One line per error: "  <field path>: <message naming the bad value>".
        line = next((line for line in lines[1:] if line.startswith(f"  {field}: ")), None)
        assert line is not None, f"no error for {field} in {lines}"
        assert value in line

    def test_every_error_is_reported_at_once(self):
        data = fleet_dict(timezone="Nowhere/Town", schedule="61 * * * *")
        data["roles"][0]["max_runtime"] = "soon"
        with pytest.raises(FleetConfigError) as error:
            parse_config(data, "fleet.yaml")
        fields = [line.split(":")[0].strip() for line in str(error.value).splitlines()[1:]]
        assert fields == ["timezone", "schedule", "roles[0].max_runtime"]

    def test_role_without_instance_or_candidates(self):
        data = fleet_dict()
        del data["roles"][0]["instance"]
        with pytest.raises(
            FleetConfigError,
            match=r"  roles\[0\]: give exactly one of 'instance' or 'candidates', got neither",
        ):
            parse_config(data)

    @pytest.mark.parametrize(
        ("text", "seconds"),
        [(90, 90), ("45s", 45), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("1h 0m 5s", 3605)],
    )
    def test_durations(self, text, seconds):
        assert parse_duration(text) == timedelta(seconds=seconds)


class TestLoadConfig:
    def test_default_is_the_shipped_file(self, monkeypatch):
        monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
        assert DEFAULT_CONFIG_PATH == DAGS_FOLDER / "fleet.yaml"
        assert load_config().signer.instance == "i-01993d9e57b195144"

    def test_env_var_selects_another_file(self, tmp_path, monkeypatch):
        path = write_yaml(tmp_path / "other.yaml", fleet_dict(region="eu-west-1"))
        monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
        config = load_config()
        assert config.region == "eu-west-1"
        assert config.signer.instance == SIGNER

    def test_missing_file_names_it(self, tmp_path):
        path = tmp_path / "nowhere.yaml"
        with pytest.raises(FleetConfigError, match=re.escape(f"{path}: cannot read the fleet config")):
            load_config(path)

    def test_broken_yaml_names_the_file(self, tmp_path):
        path = tmp_path / "broken.yaml"
        path.write_text("roles: [\n")
        with pytest.raises(FleetConfigError, match=re.escape(f"{path}: not valid YAML")):
            load_config(path)

    def test_invalid_file_is_an_import_error_of_the_dag_naming_file_and_field(self, tmp_path, monkeypatch):
        data = fleet_dict()
        data["roles"][0]["jobs"][1]["name"] = "backoffice"
        path = write_yaml(tmp_path / "broken-fleet.yaml", data)
        monkeypatch.setenv(CONFIG_ENV_VAR, str(path))

        bag = DagBag(dag_folder=DAGS_FOLDER, safe_mode=True)

        assert "fleet_daily" not in bag.dags
        assert len(bag.import_errors) == 1, bag.import_errors
        ((dag_file, error),) = bag.import_errors.items()
        assert Path(dag_file).name == "fleet_daily.py"
        assert f"{path}: invalid fleet config" in error
        assert "roles[0].jobs[1].name: duplicate job name 'backoffice', already used by jobs[0]" in error


@pytest.fixture(scope="module")
def fleet():
    return load_config(DEFAULT_CONFIG_PATH)


class TestShippedFleet:
    """dags/fleet.yaml is the fleet of reference/000 (the Lambda and its fromLambda*.sh scripts)."""

    def test_signer(self, fleet):
        assert fleet.signer.instance == "i-01993d9e57b195144"  # api_signer_vm

    def test_roles_and_their_instances(self, fleet):
        assert [(role.name, role.instance, role.candidates) for role in fleet.roles] == [
            ("tasks", "i-086cd22c6d66f5cab", None),  # tasks_vm
            ("hyperliquid", "i-09a4ecb38ca786bc5", None),  # hyperliquid_vm
            ("uniswap", "i-042ec3e7fa3906e4b", None),  # uniswap_vm
        ]

    def test_jobs_with_their_directories_virtualenvs_and_arguments(self, fleet):
        backoffice_python = "/root/backoffice/venv/bin/python"
        defilib_python = "/root/defilib/venv/bin/python"
        jobs = {role.name: [(job.name, job.cwd, job.argv) for job in role.jobs] for role in fleet.roles}
        assert jobs == {
            "tasks": [
                ("backoffice", "/root/backoffice", [backoffice_python, "aws_run.py"]),
                ("uniswap2", "/root/defilib", [defilib_python, "valuate-and-run.py", "uniswap2"]),
                ("hyperliquid", "/root/defilib", [defilib_python, "valuate-and-run.py", "hyperliquid"]),
                ("shield", "/root/defilib", [defilib_python, "valuate-and-run.py", "damm"]),
            ],
            "hyperliquid": [
                (
                    "hyperliquid_evolution",
                    "/root/defilib",
                    [defilib_python, "valuation_hyperliquid_evolution.py"],
                ),
            ],
            "uniswap": [("uniswap", "/root/defilib", [defilib_python, "uni_main.py"])],
        }

    def test_daily_at_midnight_utc_and_every_job_at_most_once(self, fleet):
        assert (fleet.schedule, fleet.timezone) == ("0 0 * * *", "UTC")
        assert all(
            not job.rerun_on_interrupt and not job.shell and not job.env
            for r in fleet.roles
            for job in r.jobs
        )
        # monitor.py alerted when a VM was still up at 00:15 UTC.
        assert fleet.alert_after == timedelta(minutes=15)
