"""``python -m bench``: measure, write ``bench/RESULTS.md``, print it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.results import BenchResults, SizeResult

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = (3, 30, 300)
QUICK_SIZES = (2,)
MAX_WORKERS = 1000


def sizes_argument(text: str) -> list[int]:
    """``"3,30,300"`` → ``[3, 30, 300]``; anything else is an error that names the value."""
    sizes = []
    for part in text.split(","):
        part = part.strip()
        try:
            size = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated whole numbers of workers like 3,30,300, got {text!r} "
                f"({part!r} is not a whole number)"
            ) from None
        if not 1 <= size <= MAX_WORKERS:
            raise argparse.ArgumentTypeError(
                f"each size must be between 1 and {MAX_WORKERS} workers, got {size} in {text!r}"
            )
        if size in sizes:
            raise argparse.ArgumentTypeError(f"size {size} is given twice in {text!r}")
        sizes.append(size)
    return sorted(sizes)


def _number(kind: type, what: str, least: str, ok: Callable[[Any], bool]) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)``, refused unless ``ok``; the errors say what was expected."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {least}, got {text!r}")
        return value

    return parse


positive_number = _number(
    float, "a number of seconds", "a positive number of seconds", lambda v: 0 < v < float("inf")
)
whole_seconds = _number(int, "a whole number of seconds", "at least 1 second", lambda v: v >= 1)
count = _number(int, "a whole number", "0 or more", lambda v: v >= 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the fleet's operators and DAG against the Amazon provider's stock operators "
        "and a model of the old scripts, on the fleet simulator; write the results as markdown.",
    )
    add = parser.add_argument
    sizes = f"default {','.join(map(str, DEFAULT_SIZES))}; --quick: {','.join(map(str, QUICK_SIZES))}"
    add("--sizes", type=sizes_argument, help=f"fleet sizes in worker instances, comma-separated ({sizes})")
    add("--out", type=Path, default=REPO / "bench" / "RESULTS.md", help="the markdown file to write")
    add(
        "--quick",
        action="store_true",
        help="a tiny run: operator level only (no Airflow runs), size 2 unless --sizes, 2 parse repeats",
    )
    add("--job-seconds", type=positive_number, default=5.0, help="each worker's job length (default 5)")
    add(
        "--poll-interval",
        type=whole_seconds,
        default=5,
        help="the fleet config's poll_interval, and the stock's shortened intervals (default 5)",
    )
    add(
        "--airflow-max",
        type=count,
        default=3,
        help="sizes up to this run as full DAG runs through real Airflow; larger ones at operator level "
        "(default 3; 0: none)",
    )
    add(
        "--agent-max",
        type=count,
        default=30,
        help="sizes up to this run the real agent on every host; larger ones a stand-in (default 30)",
    )
    add("--parse-repeats", type=count, default=5, help="timed parses per size and kind (default 5; 0: skip)")
    add("--json", type=Path, help="also write every measured value as JSON to this file")
    add(
        "--workdir",
        type=Path,
        help="keep the simulators' and Airflow's files here (default: a temporary directory, removed)",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    if args.quick:
        args.airflow_max = 0
        args.parse_repeats = min(args.parse_repeats, 2)
    out_dir = args.out.resolve().parent
    if not out_dir.is_dir():
        parser.error(f"argument --out: directory {str(out_dir)!r} does not exist (got {str(args.out)!r})")
    if args.out.is_dir():
        parser.error(f"argument --out: {str(args.out)!r} is a directory, expected a file path")
    return args


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "airflow": version("apache-airflow"),
        "amazon_provider": version("apache-airflow-providers-amazon"),
        "platform": platform.platform(),
    }


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure_size(size: int, args: argparse.Namespace, workdir: Path) -> SizeResult:
    from bench.airflow_runs import measure_airflow
    from bench.measure import measure_in_process

    airflow = size <= args.airflow_max
    host_program = "agent" if size <= args.agent_max else "stand-in"
    timing = {"workdir": workdir, "job_seconds": args.job_seconds, "poll_interval": args.poll_interval}
    try:
        if not airflow:
            return measure_in_process(size, host_program=host_program, **timing)
        if host_program != "agent":
            raise ValueError(f"full Airflow runs use the real agent: --agent-max must be at least {size}")
        return measure_airflow(size, **timing)
    except Exception as error:  # one size failing must not lose the others' results
        method, message = "airflow" if airflow else "in-process", f"{type(error).__name__}: {error}"
        return SizeResult(workers=size, method=method, host_program=host_program, error=message)


def run(args: argparse.Namespace, workdir: Path) -> BenchResults:
    from bench.parse_time import measure_parse
    from bench.report import render

    began = time.monotonic()
    results = BenchResults(
        command=shlex.join(["python", "-m", "bench", *sys.argv[1:]]),
        started_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine(),
        job_seconds=args.job_seconds,
        poll_interval=args.poll_interval,
    )
    if args.parse_repeats:
        for size in args.sizes:
            log(f"DAG parse time, {size} roles")
            results.parse.append(measure_parse(size, args.parse_repeats, workdir / "parse"))
    for size in args.sizes:
        how = "through Airflow" if size <= args.airflow_max else "at operator level"
        log(f"{size} workers, {how}")
        result = measure_size(size, args, workdir / f"size-{size}")
        failed = f" ({result.error})" if result.error else ""
        log(f"{size} workers: done in {result.seconds or 0:.0f} s{failed}")
        results.sizes.append(result)
    results.duration = time.monotonic() - began
    args.out.write_text(render(results))
    if args.json:
        args.json.write_text(json.dumps(dataclasses.asdict(results), indent=1, default=str))
    return results


def add_project_paths() -> None:
    """What Airflow puts on ``sys.path``: the DAG folder (``fleet_dag``) and the plugins (``operators``)."""
    for folder in (REPO / "plugins", REPO / "dags", REPO):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    add_project_paths()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-", ignore_cleanup_errors=True) as temporary:
        workdir = args.workdir.resolve() if args.workdir else Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        run(args, workdir)
    print(args.out.read_text())
    log(f"wrote {args.out}")
    return 0
