"""``python -m fleet_sim``: run the simulator until told to stop, or check a scenario file."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

import yaml

from fleet_sim.fleet_config import DEFAULT_FLEET_CONFIG, FleetConfigError, load_fleet_config, sim_fleet_config
from fleet_sim.scenario import ScenarioError, load_scenario

DESCRIPTION = """\
A simulated EC2 fleet behind one AWS endpoint (moto, plus SSM commands that really run, instances
that take time, a fake IMDSv2 per host, injected faults; see fleet_sim/README.md).

  serve  start it; print one line of JSON (endpoint, instances) when ready; run until
         SIGTERM or SIGINT, then stop every host process and the server
  check  validate a scenario file and print it as JSON"""

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fleet_sim",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="{serve,check}", required=True)

    serve = commands.add_parser("serve", help="run the simulator", description="Run the fleet simulator.")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (%(default)s; 0.0.0.0 only inside a container)"
    )
    serve.add_argument("--port", type=int, default=0, help="port to bind (default: any free one)")
    serve.add_argument("--fleet", default=str(DEFAULT_FLEET_CONFIG), help="the fleet config (%(default)s)")
    serve.add_argument("--scenario", help="timings and faults, YAML or JSON (see fleet_sim/README.md)")
    serve.add_argument("--workdir", help="host sandboxes and command output (default: a temporary directory)")
    serve.add_argument(
        "--write-config", metavar="OUT.yaml", help="write the fleet config rewritten onto the simulator"
    )
    serve.add_argument(
        "--job-seconds", type=float, default=2.0, help="how long each demo job runs (%(default)s)"
    )
    for option, what in (
        ("--failing", "exit 1"),
        ("--failing-once", "exit 1 on their first run for a date, 0 when run again (a Clear)"),
        ("--hanging", "hang until their timeout"),
    ):
        serve.add_argument(option, nargs="*", default=[], metavar="JOB", help=f"demo jobs that {what}")
    serve.add_argument(
        "--poll-interval",
        metavar="DURATION",
        help="the written config's poll_interval, e.g. 2s (default: the fleet config's, 30s unless set)",
    )
    serve.add_argument(
        "--pool",
        metavar="POOL.yaml",
        help="also create the warm pool this config names: its Auto Scaling group (desired 0), claim table",
    )
    serve.add_argument(
        "--write-pool-config",
        metavar="OUT.yaml",
        help="write the --pool config with its readiness check on the simulator's code-server stand-in",
    )
    serve.add_argument(
        "--advertise",
        metavar="URL",
        help="the simulator's address as clients reach it, for written configs (default: its endpoint; "
        "in a container, e.g. http://fleet-sim:5000)",
    )
    serve.add_argument("--log-level", default="WARNING", help="the simulator's log level (%(default)s)")

    check = commands.add_parser("check", help="validate a scenario file", description="Validate a scenario.")
    check.add_argument("scenario")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        try:
            scenario = load_scenario(args.scenario)
        except ScenarioError as error:
            _complain(str(error))
            return EXIT_BAD_INPUT
        print(json.dumps(scenario.to_dict(), indent=2))
        return EXIT_OK
    return serve(args)


def serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        scenario = load_scenario(args.scenario)  # bad input is refused before moto even loads
        fleet = load_fleet_config(args.fleet)
        if args.write_pool_config and not args.pool:
            raise FleetConfigError("--write-pool-config needs --pool POOL.yaml (the config to rewrite)")
        pool = _read_pool(args.pool) if args.pool else None
    except (ScenarioError, FleetConfigError) as error:
        _complain(f"cannot start: {error}")
        return EXIT_BAD_INPUT
    from fleet_sim.groups import serve_pool
    from fleet_sim.simulator import FleetSimulator, SimulatorError  # moto: only when serving

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())  # the main loop below acts
    try:
        sim = FleetSimulator(
            fleet_config=fleet, scenario=scenario, workdir=args.workdir, host=args.host, port=args.port
        ).start()
    except (FleetConfigError, SimulatorError, OSError) as error:
        _complain(f"cannot start: {error}")
        return EXIT_BAD_INPUT
    try:
        ready = {"status": "ready", **sim.describe(), "config": None}
        if args.write_config:
            options = ("job_seconds", "failing", "failing_once", "hanging")
            config = sim_fleet_config(fleet, sim, **{name: getattr(args, name) for name in options})
            if args.poll_interval:
                # The DAG's waits poll every 30 s by default; the simulator answers in seconds.
                config["poll_interval"] = args.poll_interval
            Path(args.write_config).write_text(yaml.safe_dump(config, sort_keys=False, width=1000))
            ready["config"] = args.write_config
        if pool is not None:
            try:
                pool_config = serve_pool(sim, pool, args.advertise)
            except ValueError as error:
                _complain(f"cannot start: {args.pool}: {error}")
                return EXIT_BAD_INPUT
            ready["pool"] = pool_config["group"]
            if args.write_pool_config:
                Path(args.write_pool_config).write_text(yaml.safe_dump(pool_config, sort_keys=False))
                ready["pool_config"] = args.write_pool_config
        print(json.dumps(ready, separators=(",", ":")), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sim.close()
    return EXIT_OK


def _read_pool(path: str) -> dict:
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise FleetConfigError(f"--pool {path}: cannot read the pool config: {error}") from None
    if not isinstance(document, dict):
        raise FleetConfigError(f"--pool {path}: expected a mapping, got {type(document).__name__}")
    return document


def _complain(message: str) -> None:
    print(f"fleet-sim: {message}", file=sys.stderr, flush=True)
