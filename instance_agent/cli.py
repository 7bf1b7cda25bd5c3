"""``python -m instance_agent``: the command line (``run``, ``status``)."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import time
from typing import Any

from instance_agent import exit_codes, procinfo
from instance_agent.agent import (
    SHUTDOWN_MODES,
    Prepared,
    RunOptions,
    configure_logging,
    execute,
    holder_text,
    prepare,
)
from instance_agent.checks import (
    MAX_SPEC_BYTES,
    SpecError,
    check_directory,
    check_seconds,
    validate_date,
    validate_role,
)
from instance_agent.detach import DetachError, signal_ready, spawn_supervisor
from instance_agent.display import one_line, shorten
from instance_agent.lock import Holder, LockBusy, StateDirLock, read_holder
from instance_agent.notice_watch import watch_command
from instance_agent.protocol import (
    DEFAULT_HEARTBEAT_SECONDS,
    DEFAULT_IMDS_POLL_SECONDS,
    DEFAULT_LOG_DIR,
    DEFAULT_STATE_DIR,
    MIN_HEARTBEAT_SECONDS,
    agent_log_path,
)
from instance_agent.signals import SignalRecorder
from instance_agent.spec import RunSpec, parse_spec
from instance_agent.state import StateError, StateStore

log = logging.getLogger("instance_agent")

# How long an unreadable holder line is read again before the lock counts as another run's.
HOLDER_REREADS = 10
HOLDER_REREAD_SECONDS = 0.05

DESCRIPTION = """\
The fleet's on-VM agent: runs a role's jobs once per run date, reports progress on the
instance's tags, and stops the machine as soon as every job has ended.

  run     validate, lock the state dir, plan, print one line of JSON, then detach and run
          the jobs (--foreground: stay attached, e.g. under systemd)
  status  print the state recorded for a date as JSON
  watch-notices  tag this instance with its interruption notice (the warm pool's instances)

See instance_agent/README.md for the spec format, the state file and the tags."""

EPILOG = "exit codes:\n" + "\n".join(
    f"  {code}  {text}" for code, text in sorted(exit_codes.DESCRIPTIONS.items())
)

RUN_EPILOG = (
    """\
the spec (JSON, from a file or stdin with "-") is a list of jobs, or {"jobs": [...], ...}:
  {"jobs": [{"name": "backoffice", "argv": ["/root/venv/bin/python", "run.py"],
             "cwd": "/root/backoffice", "env": {}, "timeout": 10800,
             "rerun_on_interrupt": false, "shell": false}],
   "s3_log_prefix": "s3://bucket/fleet-logs", "heartbeat_seconds": 60,
   "kill_grace_seconds": 30, "disk_warn_percent": 80, "max_runtime": 14400}
argv is executed as is (no shell) unless "shell": true. Every job gets RUN_DATE and ROLE.

"""
    + EPILOG
)


class UsageError(SpecError):
    """argparse's own refusal (a missing option, an unknown one), as a one-line bad-input error."""


class _Parser(argparse.ArgumentParser):
    """argparse, except that an error is one line (exit 2), its quoted arguments escaped and cut.

    Subparsers are built from this class too (argparse uses the parent's class).
    """

    def error(self, message: str) -> Any:
        raise UsageError(f"{one_line(message)} (see {self.prog} --help)", None)


def build_parser() -> argparse.ArgumentParser:
    # Raw: the descriptions and epilogs are laid out by hand (lists, a JSON example).
    raw = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="python -m instance_agent", description=DESCRIPTION, epilog=EPILOG, formatter_class=raw
    )
    commands = parser.add_subparsers(dest="command", metavar="{run,status,watch-notices}")
    commands.required = True

    def command(name: str, summary: str, description: str, epilog: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=summary, description=description, epilog=epilog, formatter_class=raw
        )

    run = command(
        "run",
        "run the role's jobs for a date (once per date)",
        "Run the role's jobs for a run date, at most once per date.",
        RUN_EPILOG,
    )
    run.add_argument("--role", required=True, help="the worker role (tags, S3 keys, ROLE of every job)")
    run.add_argument("--date", required=True, help="the run date, YYYY-MM-DD (RUN_DATE of every job)")
    run.add_argument("--spec", required=True, help="the job spec: a JSON file, or - for stdin")
    run.add_argument(
        "--shutdown",
        required=True,
        type=_shutdown_mode,  # not choices=: argparse would echo a bad value at full length
        metavar="{" + ",".join(SHUTDOWN_MODES) + "}",
        help="once every job has ended: os = shutdown -h now (the instance's shutdown behaviour "
        "must be 'stop'), ec2 = StopInstances on this instance, none = just exit",
    )
    run.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="state files and the lock (%(default)s)")
    run.add_argument(
        "--log-dir", default=DEFAULT_LOG_DIR, help="job logs: <log-dir>/<date>/<job>.log (%(default)s)"
    )
    run.add_argument(
        "--force", action="store_true", help="run every job again, even those that succeeded for this date"
    )
    run.add_argument("--foreground", action="store_true", help="do not detach (systemd, tests)")
    run.add_argument(
        "--heartbeat-seconds",
        type=functools.partial(_seconds_argument, minimum=MIN_HEARTBEAT_SECONDS),  # the spec's rule
        default=None,
        help="tag heartbeat interval; overrides the spec's heartbeat_seconds "
        f"(default {DEFAULT_HEARTBEAT_SECONDS:g})",
    )
    run.add_argument(
        "--imds-poll-seconds",
        type=functools.partial(_seconds_argument, minimum=None),
        default=DEFAULT_IMDS_POLL_SECONDS,
        help="interruption notice polling interval (%(default)s)",
    )

    status = command(
        "status",
        "print the recorded state as JSON",
        "Print the state recorded for a date (default: the latest) as JSON.",
        EPILOG,
    )
    status.add_argument("--date", help="the run date, YYYY-MM-DD (default: the latest recorded)")
    status.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="(%(default)s)")

    watch = command(
        "watch-notices",
        "tag this instance with its interruption notice (for instances that run no jobs)",
        "Poll IMDS and write a spot interruption or rebalance notice on this instance's "
        "fleet:notice tag (the warm pool hands out no instance carrying one).",
        EPILOG,
    )
    watch.add_argument(
        "--poll-seconds",
        type=functools.partial(_seconds_argument, minimum=1.0),
        default=DEFAULT_IMDS_POLL_SECONDS,
        help="how often IMDS is asked (%(default)s)",
    )
    watch.add_argument("--once", action="store_true", help="check once, print the notice as JSON, exit")

    supervise = commands.add_parser("_supervise")  # internal: the detached half of `run`
    supervise.add_argument("--lock-fd", type=int, required=True)
    supervise.add_argument("--ready-fd", type=int, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as error:
        _complain(f"bad input, nothing started: {error}")
        return exit_codes.EXIT_BAD_INPUT
    if args.command == "run":
        return command_run(args)
    if args.command == "status":
        return command_status(args)
    if args.command == "watch-notices":
        configure_logging()
        return watch_command(args.poll_seconds, args.once)
    return command_supervise(args)


def validate_run(args: argparse.Namespace) -> tuple[RunOptions, RunSpec]:
    """Every ``run`` input checked, before anything is created: :class:`SpecError` if bad."""
    options = RunOptions(
        run_date=validate_date(args.date),
        role=validate_role(args.role),
        state_dir=_directory(args.state_dir, "--state-dir"),
        log_dir=_directory(args.log_dir, "--log-dir"),
        shutdown=args.shutdown,
        force=args.force,
        heartbeat_seconds=args.heartbeat_seconds,
        imds_poll_seconds=args.imds_poll_seconds,
    )
    return options, _read_spec(args.spec)


def command_run(args: argparse.Namespace) -> int:
    try:
        options, spec = validate_run(args)
    except SpecError as error:
        _complain(f"bad input, nothing started: {error}")
        return exit_codes.EXIT_BAD_INPUT
    run_date = options.run_date
    configure_logging()
    signals = SignalRecorder()
    if args.foreground:
        signals.install()
    try:
        prepared = prepare(options, spec)
    except LockBusy as busy:
        return _answer_busy(busy, options.role, run_date)
    except StateError as error:
        _complain(f"refusing to run: {error}. The file was left as it is; inspect or move it aside.")
        return exit_codes.EXIT_STATE_UNUSABLE
    except OSError as error:
        _complain(f"cannot use {options.state_dir} / {options.log_dir}: {error}")
        return exit_codes.EXIT_IO_ERROR
    for warning in prepared.warnings:
        _complain(f"WARNING: {warning}")
    if args.foreground:
        configure_logging(agent_log_path(options.log_dir, run_date))
        _print_json(prepared.summary(os.getpid()))
        try:
            return execute(prepared, signals=signals)
        finally:
            prepared.lock.release()
    try:
        assert prepared.lock.fd is not None
        pid = spawn_supervisor(
            prepared.to_payload(), lock_fd=prepared.lock.fd, log_dir=options.log_dir, run_date=run_date
        )
    except (DetachError, OSError) as error:
        _complain(f"could not detach: {error}")
        return exit_codes.EXIT_IO_ERROR
    _print_json(prepared.summary(pid))
    return exit_codes.EXIT_OK


def _answer_busy(busy: LockBusy, role: str, run_date: str) -> int:
    """Another agent holds the state directory: exit 0 only if it runs this very role and date.

    Another role or date (two runs of the DAG on one VM), or a holder that cannot be read, is
    not this run's success: exit 7, nothing started.
    """
    text = busy.holder
    holder = Holder.parse(text)
    for _ in range(HOLDER_REREADS):
        if holder is not None:
            break
        # The holder writes its line right after taking the lock (and again, truncating first,
        # when the detached supervisor takes over): an empty or cut line may be that instant.
        time.sleep(HOLDER_REREAD_SECONDS)
        text = read_holder(busy.path) or text
        holder = Holder.parse(text)
    answer: dict[str, Any] = {"role": role, "date": run_date, "holder": text}
    if holder is not None and (holder.role, holder.date) == (role, run_date):
        _print_json({"status": "already_running", **answer})
        _complain(f"already running ({text}); nothing to do")
        return exit_codes.EXIT_OK
    if holder is not None:
        answer.update(holder_pid=holder.pid, holder_role=holder.role, holder_date=holder.date)
        who = f"the agent of role {holder.role} for {holder.date} (pid {holder.pid})"
    else:
        who = f"another agent (its lock file says {one_line(text, 100) if text else 'nothing'})"
    _print_json({"status": "busy", **answer})
    _complain(
        f"busy: {who} holds {busy.path}; nothing started for role {role} for {run_date} "
        f"(exit {exit_codes.EXIT_BUSY}: this VM serves one run at a time)"
    )
    return exit_codes.EXIT_BUSY


def command_supervise(args: argparse.Namespace) -> int:
    """The detached half of ``run``: take over the lock, say ready, run the jobs."""
    configure_logging()  # stderr is <log-dir>/<date>/_agent.log
    signals = SignalRecorder()
    signals.install()
    try:
        payload = json.loads(sys.stdin.read())
        lock = StateDirLock.adopt(payload["options"]["state_dir"], args.lock_fd)
        prepared = Prepared.from_payload(payload, lock)
        lock.describe_holder(holder_text(prepared.options))
    except (OSError, ValueError, KeyError, TypeError, StateError, SpecError) as error:
        log.error("the detached supervisor cannot start: %s", error)
        os.close(args.ready_fd)
        return exit_codes.EXIT_IO_ERROR
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    signal_ready(args.ready_fd)
    try:
        return execute(prepared, signals=signals)
    except Exception:
        log.exception("the supervisor failed; jobs still running keep running and the next run watches them")
        return exit_codes.EXIT_IO_ERROR


def command_status(args: argparse.Namespace) -> int:
    store = StateStore(os.path.abspath(args.state_dir))
    try:
        run_date = validate_date(args.date) if args.date else store.latest_date()
    except SpecError as error:
        _complain(str(error))
        return exit_codes.EXIT_BAD_INPUT
    if run_date is None:
        _print_json({"date": None, "state": None, "jobs": {}, "message": f"no state in {store.state_dir}"})
        return exit_codes.EXIT_OK
    try:
        state = store.load(run_date)
    except StateError as error:
        _complain(str(error))
        return exit_codes.EXIT_STATE_UNUSABLE
    if state is None:
        _print_json(
            {"date": run_date, "state": None, "jobs": {}, "message": f"no state recorded for {run_date}"}
        )
        return exit_codes.EXIT_OK
    document: dict[str, Any] = state.to_dict()
    document["agent_alive"] = procinfo.is_alive(state.agent.pid, state.agent.process)
    document["state_file"] = store.path(run_date)
    print(json.dumps(document, indent=2))
    return exit_codes.EXIT_OK


def _read_spec(source: str) -> RunSpec:
    """The spec from ``source`` (``-``: stdin), as bytes: a text stream decodes per the locale.

    At most ``MAX_SPEC_BYTES`` + 1 bytes are read, so ``/dev/zero`` is refused, not read to the end.
    """
    if source == "-":
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:
            raise SpecError("no standard input to read the spec from", ("--spec",), source)
        return parse_spec(stream.read(MAX_SPEC_BYTES + 1), "--spec - (stdin)")
    try:
        with open(source, "rb") as handle:
            data = handle.read(MAX_SPEC_BYTES + 1)
    except (OSError, ValueError) as error:  # ValueError: a name the OS cannot take
        reason = getattr(error, "strerror", None) or one_line(str(error), 100)
        raise SpecError(f"cannot read {shorten(source)}: {reason}", ("--spec",), source) from None
    return parse_spec(data, source)


def _directory(value: str, option: str) -> str:
    try:
        check_directory(value)
    except SpecError as error:
        raise error.within(option) from None
    return os.path.abspath(value)


def _shutdown_mode(text: str) -> str:
    if text not in SHUTDOWN_MODES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(SHUTDOWN_MODES)}, got {shorten(text)}")
    return text


def _seconds_argument(text: str, minimum: float | None) -> float:
    try:
        value = float(text)  # "inf", "nan" and "1e400" parse: check_seconds refuses them
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {shorten(text)}") from None
    try:
        return check_seconds(value, minimum=minimum)
    except SpecError as error:
        raise argparse.ArgumentTypeError(f"{error.problem} (from {shorten(text)})") from None


def _print_json(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _complain(message: str) -> None:
    line = f"fleet-agent: {message}\n"
    stream = getattr(sys.stderr, "buffer", None)
    if stream is None:  # replaced by a text-only stream (tests)
        sys.stderr.write(line)
        sys.stderr.flush()
        return
    # As bytes: whatever the locale's encoding, the message itself can never fail to print.
    sys.stderr.flush()
    stream.write(line.encode("utf-8", "backslashreplace"))
    stream.flush()
