"""The fleet config refuses at parse time what the agent would refuse on the VM (issue 10).

A job's name, argv, env, cwd and timeout, the run's S3 prefix and heartbeat, the agent's
directories: all reach ``python -m instance_agent run`` (see ``agent_spec`` in builder.py).
Before, the DAG accepted values the agent refuses (a lone surrogate or NUL in argv, env names
like ``A=B``, a timeout of 0.5 s sent as 0, a heartbeat under 0.1 s, 101 jobs), so the run
failed on the VM instead of at import; and a 400-digit timeout was an OverflowError, not a
config error. The rules are the agent's own (instance_agent/checks.py), called by the config;
the property test at the end holds the two together.
"""

from __future__ import annotations

import json
import re

import pytest
from fleet_dag.builder import agent_spec
from fleet_dag.config import FleetConfigError, load_config, parse_config
from fleet_dag_testing import fleet_dict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instance_agent.spec import MAX_JOBS, SpecError, parse_spec

MAX_LINE = 500
SURROGATE = "\ud800"
LONG = "x" * 100_000


def _job(**fields) -> dict:
    return {"name": "a", "argv": ["/bin/true"], "timeout": 60, **fields}


def _with_job(**fields) -> dict:
    data = fleet_dict()
    data["roles"][0]["jobs"] = [_job(**fields)]
    return data


def _error_lines(data) -> list[str]:
    with pytest.raises(FleetConfigError) as caught:
        parse_config(data, "fleet.yaml")
    lines = str(caught.value).splitlines()
    assert lines[0] == "fleet.yaml: invalid fleet config"
    for line in lines:
        assert len(line) <= MAX_LINE, line[:1000]
    return lines[1:]


def _line_for(lines: list[str], field: str) -> str:
    found = [line for line in lines if line.startswith(f"  {field}: ")]
    assert found, f"no error for {field} in {lines}"
    return found[0]


def _agent_accepts(data) -> dict:
    config = parse_config(data, "fleet.yaml")
    role = config.roles[0]
    return parse_spec(json.dumps(agent_spec(config, role), sort_keys=True), "stdin").to_dict()


AGENT_REFUSES = [
    # (id, fleet config, field path, what the line must show)
    ("argv-surrogate", _with_job(argv=["/bin/echo", SURROGATE]), "roles[0].jobs[0].argv[1]", "surrogate"),
    ("argv-nul", _with_job(argv=["/bin/echo", "a\x00b"]), "roles[0].jobs[0].argv[1]", "NUL"),
    ("shell-two-strings", _with_job(argv=["a", "b"], shell=True), "roles[0].jobs[0].argv", "exactly one"),
    ("empty-program", _with_job(argv=[""]), "roles[0].jobs[0].argv[0]", "empty program"),
    ("env-equals", _with_job(env={"A=B": "x"}), "roles[0].jobs[0].env", "'A=B'"),
    ("env-digit", _with_job(env={"1BAD": "x"}), "roles[0].jobs[0].env", "'1BAD'"),
    ("env-newline", _with_job(env={"MODE\n": "x"}), "roles[0].jobs[0].env", "'MODE\\n'"),
    ("env-reserved", _with_job(env={"ROLE": "x"}), "roles[0].jobs[0].env.ROLE", "set by the agent"),
    ("env-value-nul", _with_job(env={"MODE": "a\x00"}), "roles[0].jobs[0].env.MODE", "NUL"),
    ("env-value-surrogate", _with_job(env={"MODE": SURROGATE}), "roles[0].jobs[0].env.MODE", "surrogate"),
    ("cwd-nul", _with_job(cwd="/root\x00"), "roles[0].jobs[0].cwd", "NUL"),
    ("cwd-surrogate", _with_job(cwd=f"/{SURROGATE}"), "roles[0].jobs[0].cwd", "surrogate"),
    ("name-newline", _with_job(name="a\n"), "roles[0].jobs[0].name", "'a\\n'"),
    ("name-too-long", _with_job(name="a" * 65), "roles[0].jobs[0].name", "'aaaa"),
    ("timeout-huge", _with_job(timeout=10**400), "roles[0].jobs[0].timeout", "digits"),
    ("timeout-inf", _with_job(timeout=float("inf")), "roles[0].jobs[0].timeout", "inf"),
    ("timeout-nan", _with_job(timeout=float("nan")), "roles[0].jobs[0].timeout", "nan"),
    ("timeout-1e300", _with_job(timeout=1e300), "roles[0].jobs[0].timeout", "1e+300"),
    ("timeout-hours", _with_job(timeout="99999999999999999999h"), "roles[0].jobs[0].timeout", "at most"),
    ("max-runtime-huge", fleet_dict() | {"alert_after": 10**400}, "alert_after", "digits"),
    ("heartbeat-too-often", fleet_dict(agent={"heartbeat": 0.05}), "agent.heartbeat", "at least 0.1"),
    ("s3-control", fleet_dict(s3_log_prefix="s3://fleet-logs/a\x01b"), "s3_log_prefix", "s3://bucket"),
    ("s3-surrogate", fleet_dict(s3_log_prefix=f"s3://fleet-logs/{SURROGATE}"), "s3_log_prefix", "surrogate"),
    ("state-dir-empty", fleet_dict(agent={"state_dir": ""}), "agent.state_dir", "empty"),
    ("log-dir-nul", fleet_dict(agent={"log_dir": "/var/log\x00"}), "agent.log_dir", "NUL"),
    ("command-nul", fleet_dict(agent={"command": ["python3\x00"]}), "agent.command[0]", "NUL"),
]


class TestTheAgentsRules:
    @pytest.mark.parametrize(
        ("data", "field", "shown"), [case[1:] for case in AGENT_REFUSES], ids=[c[0] for c in AGENT_REFUSES]
    )
    def test_refused_at_parse_time_naming_field_and_value(self, data, field, shown):
        assert shown in _line_for(_error_lines(data), field)

    def test_more_jobs_than_the_agent_takes_are_refused(self):
        data = fleet_dict()
        data["roles"][0]["jobs"] = [_job(name=f"j{index}") for index in range(MAX_JOBS + 1)]

        _line_for(_error_lines(data), "roles[0].jobs")

    def test_a_role_the_agent_would_refuse_is_refused(self):
        data = fleet_dict()
        data["roles"][0]["name"] = "tasks\n"

        _line_for(_error_lines(data), "roles[0].name")

    @pytest.mark.parametrize(
        ("data", "field"),
        [
            (fleet_dict(signer={"instance": "i-0000000000000000a\n"}), "signer.instance"),
            (fleet_dict(notifier={"class_path": "operators.Notifier\n"}), "notifier.class_path"),
        ],
        ids=["instance-id", "notifier"],
    )
    def test_the_dags_own_patterns_are_matched_whole(self, data, field):
        # pydantic matches with Rust's regex, where `$` is the very end; Python's re.match
        # would let the newline through. This holds if the engine ever changes.
        _line_for(_error_lines(data), field)

    def test_from_a_file_the_error_names_the_file(self, tmp_path):
        path = tmp_path / "fleet.yaml"
        path.write_text(
            "region: us-east-1\nsigner: {instance: i-0000000000000000a}\n"
            "roles:\n- name: tasks\n  instance: i-0000000000000000b\n  max_runtime: 1h\n"
            f'  jobs:\n  - {{name: a, argv: [python, "a\\0b"], timeout: 1{"0" * 400}}}\n'
        )

        with pytest.raises(FleetConfigError) as caught:
            load_config(path)

        lines = str(caught.value).splitlines()
        assert lines[0] == f"{path}: invalid fleet config"
        assert [line.split(":")[0].strip() for line in lines[1:]] == [
            "roles[0].jobs[0].argv[1]",
            "roles[0].jobs[0].timeout",
        ]


class TestValuesReachTheAgentIntact:
    def test_sub_second_durations_are_not_rounded_to_zero(self):
        # Before: int(0.5) = 0 went to the agent, which refused `timeout: 0`.
        data = _with_job(timeout=0.5)
        data["agent"] = {"heartbeat": 0.5}

        spec = _agent_accepts(data)

        assert (spec["jobs"][0]["timeout"], spec["heartbeat_seconds"]) == (0.5, 0.5)

    def test_an_empty_argument_after_the_program_is_kept(self):
        # The agent's rule: only the program may not be empty (`grep "" file`).
        assert _agent_accepts(_with_job(argv=["/bin/grep", "", "file"]))["jobs"][0]["argv"] == [
            "/bin/grep",
            "",
            "file",
        ]


class TestLongValuesAreCut:
    @pytest.mark.parametrize(
        ("data", "field"),
        [
            (_with_job(name=LONG), "roles[0].jobs[0].name"),
            (_with_job(argv=[LONG + "\x00"]), "roles[0].jobs[0].argv[0]"),
            (_with_job(env={f"-{LONG}": "x"}), "roles[0].jobs[0].env"),
            (_with_job(timeout=LONG), "roles[0].jobs[0].timeout"),
            (fleet_dict(timezone=LONG), "timezone"),
            (fleet_dict(schedule=LONG), "schedule"),
            (fleet_dict(**{LONG: 1}), "'xxxx"),
        ],
        ids=["name", "argv", "env", "timeout", "timezone", "schedule", "unknown-key"],
    )
    def test_every_error_line_is_bounded(self, data, field):
        line = _line_for(_error_lines(data), field) if not field.startswith("'") else _error_lines(data)[0]

        assert field in line
        assert "..." in line


# -- the property: whatever the config accepts, the agent accepts -----------------------------------

TEXTS = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=10),  # lone surrogates and controls too
    st.sampled_from(["", "a\n", "\ud800", "a\x00", "A=B", "ROLE", "/", "/root", "-", "_x", "x" * 70]),
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.=-]{0,8}", fullmatch=True),
)
NUMBERS = st.one_of(
    st.integers(min_value=-5, max_value=10**12),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.5, 0.05, 1e-7, 1e300, 315_360_000, 315_360_001]),
)
DURATIONS = st.one_of(NUMBERS, st.from_regex(r"[0-9]{1,22}[hms]", fullmatch=True), TEXTS)
CONFIG_JOBS = st.fixed_dictionaries(
    {
        "name": st.one_of(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,10}", fullmatch=True), TEXTS),
        "argv": st.lists(TEXTS, min_size=0, max_size=3),
        "timeout": DURATIONS,
    },
    optional={
        "cwd": st.one_of(st.none(), TEXTS.map(lambda text: "/" + text), TEXTS),
        "env": st.dictionaries(TEXTS, TEXTS, max_size=3),
        "shell": st.booleans(),
        "rerun_on_interrupt": st.booleans(),
    },
)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,  # seeded: the same examples on every run
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    jobs=st.lists(CONFIG_JOBS, min_size=1, max_size=3),
    heartbeat=DURATIONS,
    max_runtime=DURATIONS,
    prefix=st.one_of(st.none(), TEXTS.map(lambda text: "s3://fleet-logs/" + text)),
)
def test_whatever_the_config_accepts_the_agent_accepts(jobs, heartbeat, max_runtime, prefix):
    data = fleet_dict(agent={"heartbeat": heartbeat}, s3_log_prefix=prefix)
    data["roles"][0]["jobs"] = jobs
    data["roles"][0]["max_runtime"] = max_runtime
    try:
        config = parse_config(data, "fleet.yaml")
    except FleetConfigError as error:
        lines = str(error).splitlines()
        assert lines[0] == "fleet.yaml: invalid fleet config"
        for line in lines[1:]:
            assert len(line) <= MAX_LINE, line[:1000]
            assert re.match(r"  [\w.\[\]'-]+: ", line), line  # "  <field path>: <message>"
        return
    role = config.roles[0]
    text = json.dumps(agent_spec(config, role), separators=(",", ":"), sort_keys=True)  # as agent_command
    try:
        spec = parse_spec(text, "stdin")
    except SpecError as error:
        raise AssertionError(f"the config accepted what the agent refuses: {error}") from None
    assert spec.job_names == [job.name for job in role.jobs]
