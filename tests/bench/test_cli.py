"""The command line: sizes, options, and clear errors for bad input."""

from __future__ import annotations

import pytest

from bench import cli


def error_of(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


class TestSizes:
    def test_default_and_given_sizes(self, tmp_path):
        assert cli.parse_args(["--out", str(tmp_path / "r.md")]).sizes == [3, 30, 300]
        assert cli.parse_args(["--sizes", "30, 3", "--out", str(tmp_path / "r.md")]).sizes == [3, 30]

    @pytest.mark.parametrize(
        ("value", "says"),
        [
            ("3,x", "'x' is not a whole number"),
            ("", "'' is not a whole number"),
            ("0", "between 1 and 1000 workers, got 0"),
            ("5000", "got 5000"),
            ("3,3", "size 3 is given twice"),
        ],
    )
    def test_a_bad_size_names_the_argument_and_the_value(self, capsys, value, says):
        message = error_of(capsys, ["--sizes", value])

        assert "argument --sizes" in message
        assert says in message
        assert repr(value) in message


def test_quick_is_a_tiny_operator_level_run(tmp_path):
    args = cli.parse_args(["--quick", "--out", str(tmp_path / "r.md")])

    assert args.sizes == [2]
    assert args.airflow_max == 0
    assert args.parse_repeats == 2


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--job-seconds", "-1"], "argument --job-seconds: expected a positive number of seconds, got '-1'"),
        (["--job-seconds", "soon"], "argument --job-seconds: expected a number of seconds, got 'soon'"),
        (["--poll-interval", "0"], "argument --poll-interval: expected at least 1 second, got '0'"),
        (
            ["--poll-interval", "2.5"],
            "argument --poll-interval: expected a whole number of seconds, got '2.5'",
        ),
        (["--airflow-max", "-3"], "argument --airflow-max: expected 0 or more, got '-3'"),
    ],
)
def test_bad_options_name_the_argument_and_the_value(capsys, argv, says):
    assert says in error_of(capsys, argv)


def test_an_output_in_a_missing_directory_is_refused(capsys, tmp_path):
    message = error_of(capsys, ["--out", str(tmp_path / "nowhere" / "RESULTS.md")])

    assert "argument --out" in message and "does not exist" in message
