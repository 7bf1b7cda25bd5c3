"""How long the DAG takes to parse, for fleets of N roles.

Each size is timed in a fresh interpreter (``python -m bench.parse_time --roles N``), with
``FLEET_CONFIG`` pointing at a generated config of N roles (:func:`bench.fleets.fleet_config`):

- ``build``: ``load_config()`` + ``build_dag()`` (read and validate the YAML, build the DAG);
- ``DagBag``: a real ``DagBag`` parse of ``dags/fleet_daily.py``, what Airflow's DAG processor
  does with the file (import it, collect and check the DAG); the first parse of the process also
  imports the DAG's modules (``fleet_dag``, the operators, the provider), later ones find them
  imported, as the DAG processor's pre-imported parsing processes do;
- ``stock build``: ``load_config()`` + :func:`bench.stock_dag.build_stock_dag`, for comparison.

Each is the median of ``--repeat`` runs; the parent prints what the child found as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.results import ParseResult

REPO = Path(__file__).resolve().parent.parent


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    value = action()
    return (time.perf_counter() - began) * 1000.0, value


def time_parsing(config_path: Path, repeat: int) -> dict[str, Any]:
    """In this process: the three timings for the config at ``config_path`` (milliseconds)."""
    os.environ["FLEET_CONFIG"] = str(config_path)
    from airflow.dag_processing.dagbag import DagBag

    dag_file = REPO / "dags" / "fleet_daily.py"

    def parse_file() -> Any:
        bag = DagBag(dag_folder=str(dag_file), safe_mode=False)
        if bag.import_errors:
            raise RuntimeError(f"DagBag import errors: {bag.import_errors}")
        return bag.dags["fleet_daily"]

    first_ms, dag = _timed(parse_file)
    dagbag_ms = [_timed(parse_file)[0] for _ in range(repeat)]

    from fleet_dag.builder import build_dag
    from fleet_dag.config import load_config

    from bench.stock_dag import build_stock_dag

    build_ms = [_timed(lambda: build_dag(load_config(config_path)))[0] for _ in range(repeat)]
    stock_ms = []
    stock_tasks = None
    for _ in range(repeat):
        elapsed, stock = _timed(lambda: build_stock_dag(load_config(config_path)))
        stock_ms.append(elapsed)
        stock_tasks = len(stock.tasks)
    return {
        "tasks": len(dag.tasks),
        "dagbag_first_ms": first_ms,
        "dagbag_ms": dagbag_ms,
        "build_ms": build_ms,
        "stock_build_ms": stock_ms,
        "stock_tasks": stock_tasks,
    }


def measure_parse(roles: int, repeat: int, workdir: Path, timeout: float = 600.0) -> ParseResult:
    """Time parsing a DAG of ``roles`` roles in a fresh interpreter."""
    from bench.fleets import fleet_config, write_yaml
    from bench.measure import child_environment

    result = ParseResult(roles=roles)
    config_path = write_yaml(workdir / f"fleet.{roles}-roles.yaml", fleet_config(roles))
    env = child_environment(
        workdir / "airflow-home",
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
    )
    command = [
        sys.executable,
        "-m",
        "bench.parse_time",
        "--config",
        str(config_path),
        "--repeat",
        str(repeat),
    ]
    try:
        done = subprocess.run(
            command, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        result.error = f"not measured: parsing did not finish in {timeout:.0f} s"
        return result
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join((done.stderr or done.stdout).splitlines()[-10:])
        result.error = f"the parse timing process exited {done.returncode}: {tail}"
        return result
    return ParseResult(roles=roles, **json.loads(lines[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parse_time", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="the fleet config to parse")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each kind (default 5)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat: expected at least 1, got {args.repeat}")
    print(json.dumps(time_parsing(args.config.resolve(), args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
