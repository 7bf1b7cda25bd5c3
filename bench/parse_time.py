"""How long the DAG takes to parse, for fleets of N roles (``bench/method.md``, *DAG parse time*).

Each size is timed in a fresh interpreter (``python -m bench.parse_time --config FILE OUT``, with
``FLEET_CONFIG`` at a config of N roles): ``load_config()`` + ``build_dag()``, a real ``DagBag`` parse
of ``dags/fleet_daily.py`` (the first one also imports the DAG's modules, apart), and the stock DAG's build.
"""

from __future__ import annotations

import argparse
import json
import os
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
    stock = [_timed(lambda: build_stock_dag(load_config(config_path))) for _ in range(repeat)]
    return {
        "tasks": len(dag.tasks),
        "dagbag_first_ms": first_ms,
        "dagbag_ms": dagbag_ms,
        "build_ms": build_ms,
        "stock_build_ms": [elapsed for elapsed, _ in stock],
        "stock_tasks": len(stock[-1][1].tasks),
    }


def measure_parse(roles: int, repeat: int, workdir: Path, timeout: float = 600.0) -> ParseResult:
    """Time parsing a DAG of ``roles`` roles in a fresh interpreter."""
    from bench.fleets import fleet_config, write_yaml
    from bench.measure import child_environment, run_json_child

    config_path = write_yaml(workdir / f"fleet.{roles}-roles.yaml", fleet_config(roles))
    env = child_environment(
        workdir / "airflow-home",
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
    )
    args = ["--config", str(config_path), "--repeat", str(repeat)]
    found = run_json_child("bench.parse_time", args, env, workdir / f"parse.{roles}-roles.json", timeout)
    return ParseResult(roles=roles, **found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parse_time", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="the fleet config to parse")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each kind (default 5)")
    parser.add_argument("out", type=Path, help="where to write the timings, JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat: expected at least 1, got {args.repeat}")
    args.out.write_text(json.dumps(time_parsing(args.config.resolve(), args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
