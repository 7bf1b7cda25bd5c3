"""Every bad spec or argument is refused cleanly (issue 10, section 2).

The contract (instance_agent/README.md): bad input to ``run`` is exit 2 and ONE line on stderr
naming the field and the value, cut to a readable length; nothing started, nothing written.
Each class below is one way that contract was broken: a traceback (exit 1), a job started with
input it cannot take, or a refusal echoing 100 kB. The in-process cases pin the exact field;
the subprocess cases check what a caller sees.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from instance_agent.spec import SpecError, parse_spec, spec_from_document, validate_date, validate_role

MAX_LINE = 500  # a refusal is one readable line
SURROGATE = "\ud800"  # a lone surrogate: a str Python holds, but no UTF-8 encoding exists
LOW_SURROGATE = "\udcff"  # what surrogateescape makes of byte 0xff: must not become that byte
HUGE = "1" + "0" * 400  # a JSON integer too large for a float
LONG = "x" * 100_000


def _job(**fields) -> dict:
    return {"name": "a", "argv": ["/bin/true"], **fields}


def _refusal(data, source: str = "spec.json") -> str:
    """The spec error ``parse_spec`` raises for ``data`` (a document, JSON text or bytes)."""
    if not isinstance(data, str | bytes):
        data = json.dumps(data)
    with pytest.raises(SpecError) as caught:
        parse_spec(data, source)
    message = str(caught.value)
    assert "\n" not in message
    assert len(message) <= MAX_LINE, len(message)
    return message


def _refused(completed: subprocess.CompletedProcess, agent, field: str) -> str:
    """Exit 2, nothing on stdout, one bounded line naming ``field``, no state and no log."""
    assert completed.returncode == 2, (completed.returncode, completed.stderr[-3000:])
    assert not completed.stdout
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, lines[:6]
    assert len(lines[0]) <= MAX_LINE, len(lines[0])
    assert field in lines[0], lines[0]
    assert not agent.state_dir.exists(), "bad input must not write anything"
    assert not agent.log_dir.exists(), "bad input must not write anything"
    return lines[0]


def _with_literal(document: dict, literal: str) -> str:
    """``document`` as JSON with the string "@@" replaced by raw JSON text (e.g. NaN)."""
    return json.dumps(document).replace('"@@"', literal)


UNENCODABLE = [
    # (id, document, field the refusal names)
    ("argv-program", {"jobs": [_job(argv=[SURROGATE])]}, "jobs[0].argv[0]"),
    ("argv-argument", {"jobs": [_job(argv=["/bin/echo", f"x{SURROGATE}"])]}, "jobs[0].argv[1]"),
    ("argv-escaped-byte", {"jobs": [_job(argv=["/bin/echo", LOW_SURROGATE])]}, "jobs[0].argv[1]"),
    ("shell-line", {"jobs": [_job(argv=[f"echo {SURROGATE}"], shell=True)]}, "jobs[0].argv[0]"),
    ("env-value", {"jobs": [_job(env={"MODE": SURROGATE})]}, "jobs[0].env.MODE"),
    ("env-name", {"jobs": [_job(env={f"MODE{SURROGATE}": "x"})]}, "jobs[0].env"),
    ("cwd", {"jobs": [_job(cwd=f"/tmp/{SURROGATE}")]}, "jobs[0].cwd"),
    ("s3-prefix", {"jobs": [_job()], "s3_log_prefix": f"s3://bucket/{SURROGATE}"}, "s3_log_prefix"),
    # NUL: execve takes C strings, so it cannot carry one wherever the string goes.
    ("nul-argv", {"jobs": [_job(argv=["/bin/echo", "a\x00b"])]}, "jobs[0].argv[1]"),
    ("nul-env-value", {"jobs": [_job(env={"MODE": "a\x00b"})]}, "jobs[0].env.MODE"),
    ("nul-env-name", {"jobs": [_job(env={"MO\x00DE": "x"})]}, "jobs[0].env"),
    ("nul-cwd", {"jobs": [_job(cwd="/tmp/a\x00b")]}, "jobs[0].cwd"),
    ("nul-s3-prefix", {"jobs": [_job()], "s3_log_prefix": "s3://bucket/a\x00b"}, "s3_log_prefix"),
]


class TestStringsTheOsCannotTake:
    @pytest.mark.parametrize(
        ("document", "field"), [c[1:] for c in UNENCODABLE], ids=[c[0] for c in UNENCODABLE]
    )
    def test_refused_naming_the_field(self, document, field):
        assert _refusal(document).startswith(f"spec.json: {field}: ")

    @pytest.mark.parametrize(
        ("where", "field"),
        [("argv", "jobs[0].argv[2]"), ("env", "jobs[0].env.MODE"), ("cwd", "jobs[0].cwd")],
    )
    def test_a_lone_surrogate_starts_nothing(self, agent, where, field):
        # Before: `started`, exit 0, then the supervisor died of UnicodeEncodeError mid-run.
        job = agent.counting_job("trade")
        if where == "argv":
            job["argv"].append(SURROGATE)
        elif where == "env":
            job["env"] = {"MODE": SURROGATE}
        else:
            job["cwd"] = f"/{SURROGATE}"

        completed = agent.run(agent.spec([job]))

        _refused(completed, agent, field)
        assert agent.count("trade") == 0


class TestTrailingNewlines:
    def test_a_role_with_a_trailing_newline_is_refused(self, agent):
        # Before: accepted; the job saw ROLE="tasks\n" and the date then refused role "tasks".
        completed = agent.run(agent.spec([agent.counting_job("trade")]), role="tasks\n")

        _refused(completed, agent, "--role")
        assert agent.count("trade") == 0

    @pytest.mark.parametrize(
        ("document", "field"),
        [
            ({"jobs": [_job(name="a\n")]}, "jobs[0].name"),
            ({"jobs": [_job(env={"MODE\n": "x"})]}, "jobs[0].env"),
            ({"jobs": [_job()], "s3_log_prefix": "s3://bucket/logs\n"}, "s3_log_prefix"),
            ({"jobs": [_job()], "s3_log_prefix": "s3://bucket\n"}, "s3_log_prefix"),
        ],
        ids=["job-name", "env-name", "s3-key", "s3-bucket"],
    )
    def test_spec_names_are_matched_whole(self, document, field):
        assert _refusal(document).startswith(f"spec.json: {field}: ")

    @pytest.mark.parametrize("check", [validate_role, validate_date])
    def test_arguments_are_matched_whole(self, check):
        value = "tasks\n" if check is validate_role else "2026-11-23\n"
        with pytest.raises(SpecError):
            check(value)


NUMBER_FIELDS = [
    # (field, document with the placeholder "@@", field path in the refusal)
    ("timeout", {"jobs": [_job(timeout="@@")]}, "jobs[0].timeout"),
    ("max_runtime", {"jobs": [_job()], "max_runtime": "@@"}, "max_runtime"),
    ("kill_grace_seconds", {"jobs": [_job()], "kill_grace_seconds": "@@"}, "kill_grace_seconds"),
    ("heartbeat_seconds", {"jobs": [_job()], "heartbeat_seconds": "@@"}, "heartbeat_seconds"),
    ("disk_warn_percent", {"jobs": [_job()], "disk_warn_percent": "@@"}, "disk_warn_percent"),
]
BAD_NUMBERS = [HUGE, f"-{HUGE}", "1e400", "NaN", "Infinity", "-Infinity", "true", "1e300", "-1"]


class TestNumbers:
    @pytest.mark.parametrize("literal", BAD_NUMBERS)
    @pytest.mark.parametrize(
        ("document", "field"), [c[1:] for c in NUMBER_FIELDS], ids=[c[0] for c in NUMBER_FIELDS]
    )
    def test_refused_naming_the_field(self, document, field, literal):
        # Before: 400 digits was an OverflowError traceback; Infinity and 1e300 were accepted.
        assert _refusal(_with_literal(document, literal)).startswith(f"spec.json: {field}: ")

    def test_a_400_digit_timeout_is_exit_2(self, agent):
        spec = agent.root / "spec.json"
        spec.write_text(_with_literal({"jobs": [agent.counting_job("trade", timeout="@@")]}, HUGE))

        line = _refused(agent.run(str(spec)), agent, "jobs[0].timeout")

        assert "..." in line  # the 400 digits are cut

    @pytest.mark.parametrize("option", ["--heartbeat-seconds", "--imds-poll-seconds"])
    @pytest.mark.parametrize("value", ["inf", "nan", "1e400", "-1", "0", "soon"])
    def test_cli_numbers_are_finite_and_positive(self, agent, option, value):
        # Before: inf was accepted, and argparse's refusals were two lines (usage + error).
        completed = agent.run(agent.spec([agent.counting_job("trade")]), f"{option}={value}")

        _refused(completed, agent, option)


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


class TestDeepNesting:
    def test_100000_nested_brackets_on_stdin_are_refused(self, agent):
        # Before: a RecursionError traceback, exit 1.
        line = _refused(agent.run("-", input="[" * 100_000), agent, "stdin")

        assert "nested too deeply" in line

    def test_a_deep_value_is_shown_without_recursing(self):
        # The refusal shows the bad argv; before, showing it was a RecursionError.
        with pytest.raises(SpecError) as caught:
            spec_from_document({"jobs": [_job(argv=_nested(50_000))]})

        assert str(caught.value).startswith("jobs[0].argv[0]: ")
        assert len(str(caught.value)) <= MAX_LINE


def _run_bytes(agent, data: bytes, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        agent.command("-"),
        env={**agent.env, **env},
        cwd=agent.work,
        input=data,
        capture_output=True,
        timeout=60,
    )


class TestInvalidUtf8:
    @pytest.mark.parametrize(
        "locale",
        [{"PYTHONIOENCODING": "utf-8:strict"}, {"LC_ALL": "C.UTF-8"}, {"LC_ALL": "C"}, {"PYTHONUTF8": "1"}],
        ids=["strict", "c-utf8", "c", "utf8-mode"],
    )
    def test_a_bad_byte_on_stdin_is_refused_at_its_offset(self, agent, locale):
        # Before: a UnicodeDecodeError traceback (strict), or the raw byte passed to the job.
        job = agent.counting_job("trade")
        job["argv"].append("@@")
        data = json.dumps([job]).encode().replace(b"@@", b"\xff")

        completed = _run_bytes(agent, data, locale)

        completed.stdout, completed.stderr = completed.stdout.decode(), completed.stderr.decode()
        line = _refused(completed, agent, "stdin")
        offset = data.index(b"\xff")
        assert f"offset {offset}" in line
        assert agent.count("trade") == 0

    def test_a_bad_byte_in_a_spec_file_is_refused_at_its_offset(self, agent):
        spec = agent.root / "spec.json"
        data = b'[{"name": "trade", "argv": ["\xc3("]}]'  # a lead byte without its continuation
        spec.write_bytes(data)

        line = _refused(agent.run(str(spec)), agent, str(spec))

        assert f"offset {data.index(0xC3)}" in line

    def test_bytes_are_decoded_strictly_in_process(self):
        assert "not valid UTF-8 at byte offset 3" in _refusal(
            b'[{"\xed\xa0\x80": 1}]'
        )  # an encoded surrogate


class TestEchoedValuesAreCut:
    def test_a_100_kb_date_is_cut(self, agent):
        line = _refused(
            agent.run(agent.spec([agent.counting_job("trade")]), date=f"2026-11-23{LONG}"), agent, "--date"
        )

        assert "'2026-11-23xxx" in line

    def test_a_100_kb_unknown_key_is_cut(self, agent):
        spec = agent.root / "spec.json"
        spec.write_text(json.dumps({"jobs": [agent.counting_job("trade")], LONG: 1}))

        _refused(agent.run(str(spec)), agent, "(top level): unknown key 'xxx")

    def test_a_long_spec_path_is_cut(self, agent):
        _refused(agent.run("/nowhere/" + "d/" * 5000 + "spec.json"), agent, "--spec")

    @pytest.mark.parametrize(
        ("document", "field"),
        [
            ({"jobs": [_job(name=LONG)]}, "jobs[0].name"),
            ({"jobs": [_job(argv=["/bin/echo", LONG + "\x00"])]}, "jobs[0].argv[1]"),
            ({"jobs": [_job(argv=[[LONG[:1000]] * 100])]}, "jobs[0].argv[0]"),
            ({"jobs": [_job(env={f"-{LONG}": "x"})]}, "jobs[0].env"),
            ({"jobs": [_job(env={"A": LONG + "\x00"})]}, "jobs[0].env.A"),
            ({"jobs": [_job(cwd=LONG)]}, "jobs[0].cwd"),
            ({"jobs": [_job(**{LONG: 1})]}, "jobs[0]"),
            ({"jobs": [_job(timeout=LONG)]}, "jobs[0].timeout"),
            ({"jobs": [_job()], "s3_log_prefix": LONG}, "s3_log_prefix"),
            ({"jobs": LONG}, "jobs"),
            (json.dumps(LONG), "(top level)"),
        ],
        ids=[
            "name",
            "nul-argv",
            "argv-list",
            "env-name",
            "nul-env",
            "cwd",
            "job-key",
            "timeout",
            "s3",
            "jobs",
            "top",
        ],
    )
    def test_every_refusal_cuts_the_value(self, document, field):
        message = _refusal(document)

        assert message.startswith(f"spec.json: {field}")
        assert "..." in message

    def test_a_value_python_cannot_print_is_still_shown(self):
        # repr() of an int over 4300 digits raises ValueError: the refusal must not.
        with pytest.raises(SpecError, match=r"^jobs\[0\]\.name: "):
            spec_from_document({"jobs": [_job(name=10**5000)]})

    def test_a_long_source_name_is_cut(self):
        assert len(_refusal("[", source="/" + "s" * 10_000)) <= MAX_LINE

    @pytest.mark.parametrize(
        "extra",
        [("--shutdown", LONG), ("--bogus", "x\ny"), ("--role",), (f"--{LONG}",)],
        ids=["bad-shutdown", "unknown-option", "missing-value", "long-unknown"],
    )
    def test_argument_errors_are_one_line(self, agent, extra):
        # Before: argparse printed its usage and the error, the value at full length.
        command = agent.command(agent.spec([agent.counting_job("trade")]))[3:]
        completed = agent.cli(*command, *extra)

        _refused(completed, agent, "argument")


class TestOtherBadInput:
    def test_too_many_jobs_are_refused(self):
        jobs = [_job(name=f"j{index}") for index in range(101)]

        assert _refusal({"jobs": jobs}).startswith("spec.json: jobs: ")

    def test_a_spec_over_1_mib_is_refused_unread(self, agent):
        spec = agent.root / "spec.json"
        spec.write_text(json.dumps([agent.counting_job("trade")]) + " " * (1 << 20))

        _refused(agent.run(str(spec)), agent, "MiB")
        assert agent.count("trade") == 0

    def test_a_key_given_twice_is_refused(self):
        text = '{"jobs": [{"name": "a", "argv": ["/bin/true"], "timeout": 5, "timeout": 50000}]}'

        assert "duplicate key 'timeout'" in _refusal(text)

    def test_an_empty_state_dir_is_refused(self, agent):
        # Before: "" was the current directory, and the state file landed there.
        command = agent.command(agent.spec([agent.counting_job("trade")]))
        command[command.index("--state-dir") + 1] = ""

        completed = agent.cli(*command[3:])

        _refused(completed, agent, "--state-dir")
        assert not list(agent.work.glob("*.json")) and not (agent.work / "agent.lock").exists()

    @pytest.mark.parametrize(
        ("job", "field"),
        [
            (_job(argv=[]), "jobs[0].argv"),
            (_job(argv=[""]), "jobs[0].argv[0]"),
            (_job(argv=[""], shell=True), "jobs[0].argv[0]"),
            (_job(env={"A=B": "x"}), "jobs[0].env"),
            (_job(env={"": "x"}), "jobs[0].env"),
            (_job(env={"1A": "x"}), "jobs[0].env"),
        ],
        ids=["empty-argv", "empty-program", "empty-shell-line", "env-equals", "env-empty", "env-digit"],
    )
    def test_programs_and_variable_names_must_be_usable(self, job, field):
        assert _refusal({"jobs": [job]}).startswith(f"spec.json: {field}: ")

    def test_an_empty_argument_after_the_program_is_passed_as_is(self):
        # `grep "" file` is a real command line: only the program itself must not be empty.
        assert parse_spec(json.dumps([_job(argv=["/bin/grep", "", "file"])])).jobs[0].argv == (
            "/bin/grep",
            "",
            "file",
        )

    @pytest.mark.parametrize("value", [None, 7, ["tasks"], b"tasks", "", "a" * 65, "-tasks", "tâsks"])
    def test_odd_roles_are_refused(self, value):
        with pytest.raises(SpecError, match=r"^--role: "):
            validate_role(value)

    @pytest.mark.parametrize(
        "value", [None, 20261123, b"2026-11-23", "\uff12\uff10\uff12\uff16-11-23", "2026-11-23T00:00"]
    )
    def test_odd_dates_are_refused(self, value):
        with pytest.raises(SpecError, match=r"^--date: "):
            validate_date(value)

    def test_a_variable_name_that_is_no_string_is_refused(self):
        # JSON keys are strings; a document built in Python may hold others.
        with pytest.raises(SpecError, match=r"^jobs\[0\]\.env: "):
            spec_from_document({"jobs": [_job(env={1: "x"})]})
