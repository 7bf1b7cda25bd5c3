"""The refusal contract as a property (issue 10), seeded so that every run tries the same inputs.

For any JSON-ish input (arbitrary nesting, any text including lone surrogates and control
characters, huge integers, NaN and infinities, long strings, near-valid jobs) the spec parser
either returns a valid spec or raises :class:`SpecError` whose message is one line of at most
500 characters naming a field; never another exception. The same for the ``run`` arguments.
Hundreds of examples run in process; a small sample goes through ``python -m instance_agent
run`` to check exit 2, one line on stderr, and nothing written.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from agent_testing import Agent
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from instance_agent.checks import MAX_SECONDS
from instance_agent.cli import UsageError, build_parser, validate_run
from instance_agent.protocol import JOB_NAME_PATTERN, ROLE_NAME_PATTERN
from instance_agent.spec import (
    MAX_JOBS,
    RunSpec,
    SpecError,
    parse_spec,
    spec_from_document,
    validate_date,
    validate_role,
)

MAX_LINE = 500
# derandomize: the examples are a fixed function of the test, the same on every run and in CI.
SEEDED = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_JOB_FIELD = r"(name|argv|shell|cwd|env|timeout|rerun_on_interrupt)(\[\d+\]|\.[A-Za-z_][A-Za-z0-9_]*|\[.+\])?"
# What a refusal names first: a field of the spec, or the input as a whole.
FIELD = re.compile(
    r"(\(top level\)|jobs(\[\d+\](\." + _JOB_FIELD + r")?)?|s3_log_prefix|heartbeat_seconds"
    r"|kill_grace_seconds|disk_warn_percent|max_runtime): "
    r"|not valid JSON: |not valid UTF-8 at byte offset \d+ |larger than 1 MiB|duplicate key "
)
OPTION = re.compile(
    r"--(role|date|spec|shutdown|state-dir|log-dir|heartbeat-seconds|imds-poll-seconds)\b|argument"
)

# -- inputs ---------------------------------------------------------------------------------------

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates and controls too
NASTY = st.sampled_from(
    [
        "",
        "tasks\n",
        "\ud800",
        "\udcff",
        "a\x00b",
        "/",
        "/tmp\n",
        "ROLE",
        "RUN_DATE",
        "A=B",
        "s3://bucket/logs",
        "s3://bucket/logs\n",
        "s3://b\x01",
        "2026-11-23",
        "2026-11-23\n",
        "_agent",
        "-x",
    ]
)
LONG_TEXT = st.integers(min_value=100, max_value=5000).map(lambda length: "x" * length)
NEAR_NAMES = st.text(alphabet="abZ09_.-/= \n\t", min_size=1, max_size=70)
TEXTS = st.one_of(ANY_TEXT, NASTY, NEAR_NAMES, LONG_TEXT)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.integers(min_value=-(10**450), max_value=10**450),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 0.05, 0.1, 1, 30, MAX_SECONDS, MAX_SECONDS + 1, 10**400, 1e300, 1e-300]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXTS)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXTS, inner, max_size=4)),
    max_leaves=12,
)


def _mostly(good: st.SearchStrategy) -> st.SearchStrategy:
    """Usually a plausible value for the field, sometimes anything at all."""
    return st.one_of(good, good, VALUES)


NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,8}", fullmatch=True)
ENV_NAMES = st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True), TEXTS)
JOBS = st.fixed_dictionaries(
    {"name": _mostly(NAMES), "argv": _mostly(st.lists(TEXTS, min_size=1, max_size=3))},
    optional={
        "shell": _mostly(st.booleans()),
        "cwd": _mostly(TEXTS.map(lambda text: "/" + text)),
        "env": _mostly(st.dictionaries(ENV_NAMES, TEXTS, max_size=3)),
        "timeout": _mostly(NUMBERS),
        "rerun_on_interrupt": _mostly(st.booleans()),
        "timout": VALUES,  # a typo: an unknown key
    },
)
RUNS = st.fixed_dictionaries(
    {"jobs": _mostly(st.lists(JOBS, min_size=1, max_size=3))},
    optional={
        "s3_log_prefix": _mostly(TEXTS.map(lambda text: "s3://fleet-logs/" + text)),
        "heartbeat_seconds": _mostly(NUMBERS),
        "kill_grace_seconds": _mostly(NUMBERS),
        "disk_warn_percent": _mostly(NUMBERS),
        "max_runtime": _mostly(NUMBERS),
        "retries": VALUES,
    },
)
MANY_JOBS = st.integers(min_value=MAX_JOBS - 2, max_value=MAX_JOBS + 30).map(
    lambda count: [{"name": f"j{index}", "argv": ["/bin/true"]} for index in range(count)]
)


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


DEEP = st.integers(min_value=10, max_value=5000).map(
    lambda depth: {"jobs": [{"name": "a", "argv": _nested(depth)}]}
)
DOCUMENTS = st.one_of(VALUES, st.lists(JOBS, max_size=3), RUNS, RUNS, MANY_JOBS, DEEP)


def _spec_bytes(document) -> bytes | None:
    try:
        return json.dumps(document).encode()
    except (ValueError, RecursionError):  # too deep for json.dumps itself
        return None


def _mutated(data: bytes, position: int, byte: int) -> bytes:
    position %= len(data) + 1
    return data[:position] + bytes([byte]) + data[position:]


RAW = st.one_of(
    st.binary(max_size=200),
    st.builds(
        _mutated, RUNS.map(lambda d: json.dumps(d).encode()), st.integers(0, 10**6), st.integers(0, 255)
    ),
    ANY_TEXT.map(
        lambda text: json.dumps([{"name": "a", "argv": [text]}], ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        )
    ),
    st.integers(min_value=1, max_value=200_000).map(lambda depth: b"[" * depth),
    # Over Python's 4300-digit limit of int(str): json.loads raises a plain ValueError.
    st.integers(min_value=4000, max_value=5000).map(lambda digits: b"[" + b"1" * digits + b"]"),
    st.sampled_from([b"", b"NaN", b"[1e400]", b'{"jobs": 1, "jobs": 2}', b"\xef\xbb\xbf[]"]),
)

# -- the contract -----------------------------------------------------------------------------------


def _assert_clean_refusal(error: SpecError, source: str | None = None) -> None:
    message = str(error)
    assert len(message.splitlines()) == 1, message[:1000]
    assert len(message) <= MAX_LINE, message[:1000]
    if source is not None:
        assert message.startswith(f"{source}: "), message
        message = message[len(source) + 2 :]
    assert FIELD.match(message), message


def _assert_valid(spec: RunSpec) -> None:
    assert 1 <= len(spec.jobs) <= MAX_JOBS
    for job in spec.jobs:
        assert JOB_NAME_PATTERN.fullmatch(job.name)
        assert job.argv and job.argv[0] and job.cwd.startswith("/")
        for text in (*job.argv, job.cwd, *job.env, *job.env.values()):
            text.encode("utf-8")  # strictly: no lone surrogate reaches execve
            assert "\x00" not in text
        assert job.timeout is None or 0 < job.timeout <= MAX_SECONDS
    for number in (spec.heartbeat_seconds, spec.kill_grace_seconds, spec.disk_warn_percent):
        assert math.isfinite(number) and number >= 0
    assert spec.max_runtime is None or 0 < spec.max_runtime <= MAX_SECONDS
    # The detached supervisor gets the spec back through JSON: it must read the same.
    assert parse_spec(json.dumps(spec.to_dict())) == spec


class TestSpecParserProperty:
    @SEEDED
    @given(DOCUMENTS)
    def test_any_document_is_a_valid_spec_or_one_clean_refusal(self, document):
        try:
            _assert_valid(spec_from_document(document))
        except SpecError as error:
            _assert_clean_refusal(error)
        data = _spec_bytes(document)
        if data is not None:
            try:
                _assert_valid(parse_spec(data, "spec.json"))
            except SpecError as error:
                _assert_clean_refusal(error, "spec.json")

    @SEEDED
    @given(RAW)
    def test_any_bytes_are_a_valid_spec_or_one_clean_refusal(self, data):
        try:
            _assert_valid(parse_spec(data, "--spec - (stdin)"))
        except SpecError as error:
            _assert_clean_refusal(error, "--spec - (stdin)")


# -- the run arguments --------------------------------------------------------------------------------

ARGUMENTS = st.one_of(
    TEXTS, st.sampled_from(["tasks", "2026-11-23", "none", "ec2", "os", "0.5", "inf", "nan"])
)
EXTRA = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "--force",
                "--foreground",
                "--heartbeat-seconds",
                "--imds-poll-seconds",
                "--bogus",
                "--",
                "--role",
                "-x",
            ]
        ),
        ARGUMENTS,
    ),
    max_size=3,
)


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("spec") / "spec.json"
    path.write_text(json.dumps([{"name": "a", "argv": ["/bin/true"]}]))
    return str(path)


class TestRunArgumentsProperty:
    @SEEDED
    @given(role=ARGUMENTS, date=ARGUMENTS, shutdown=ARGUMENTS, state_dir=ARGUMENTS, extra=EXTRA)
    def test_any_arguments_are_valid_or_one_clean_refusal(
        self, spec_file, role, date, shutdown, state_dir, extra
    ):
        argv = ["run", "--role", role, "--date", date, "--spec", spec_file, "--shutdown", shutdown]
        argv += ["--state-dir", state_dir, "--log-dir", "/tmp/fleet-agent-logs", *extra]
        try:
            options, spec = validate_run(build_parser().parse_args(argv))
        except (UsageError, SpecError) as error:
            message = str(error)
            assert len(message.splitlines()) == 1, message[:1000]
            assert len(message) <= MAX_LINE, message[:1000]
            assert OPTION.search(message), message
            return
        assert ROLE_NAME_PATTERN.fullmatch(options.role)
        assert re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", options.run_date)
        assert options.shutdown in ("os", "ec2", "none")
        options.state_dir.encode("utf-8")
        _assert_valid(spec)


# -- a sample through the real command line --------------------------------------------------------


def _refused_in_process(data: bytes, role: str, date: str) -> bool:
    try:
        validate_role(role)
        validate_date(date)
        parse_spec(data)
    except SpecError:
        return True
    return False


OS_ARGUMENTS = st.one_of(  # what an argv can carry: no NUL, surrogates only as escaped bytes
    st.sampled_from(["tasks", "tasks", "tasks\n", "\udcff", ""]),
    LONG_TEXT,
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=8),
)


class TestCommandLineSample:
    @settings(SEEDED, max_examples=15)
    @given(
        data=st.one_of(DOCUMENTS.map(_spec_bytes).filter(lambda data: data is not None), RAW),
        role=OS_ARGUMENTS,
        date=st.one_of(st.sampled_from(["2026-11-23", "2026-11-23", "2026-02-30"]), LONG_TEXT),
    )
    def test_bad_input_is_exit_2_one_line_and_nothing_written(self, data, role, date):
        assume(_refused_in_process(data, role, date))
        with tempfile.TemporaryDirectory() as root:
            agent = Agent(Path(root))
            completed = subprocess.run(
                agent.command("-", role=role, date=date),
                env=agent.env,
                cwd=agent.work,
                input=data,
                capture_output=True,
                timeout=60,
            )

            stderr = completed.stderr.decode("utf-8", "replace")
            assert completed.returncode == 2, stderr[-3000:]
            assert completed.stdout == b""
            assert len(stderr.splitlines()) == 1, stderr[:2000]
            assert len(stderr) <= MAX_LINE + 50  # "fleet-agent: bad input, nothing started: " + the error
            assert not agent.state_dir.exists() and not agent.log_dir.exists()
