"""``python -m fleet_demo.pool_demo`` (``make pool-demo``): the warm pool on the simulator, through
a real Airflow: the pool fills to its buffer of 5 ready instances; 8 projects allocate at once
(5 at once, 3 wait for the scale-up their shortage asked for); 3 are destroyed; the pool refills.
It prints each allocation's latency and every reconcile's decisions. Exit 0 when every project got
its own instance and the pool came back to its buffer; 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from airflow_harness import AirflowComponents, HarnessError
from fleet_sim import FleetSimulator
from fleet_sim.groups import serve_pool

REPO = Path(__file__).resolve().parent.parent
GROUP, TABLE, BUFFER, PROJECTS, DESTROYED = "vscode-asg", "fleet-pool-claims", 5, 8, 3
SCENARIO = {"transition_delay": 3.0, "ready_delay": 2.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fleet_demo.pool_demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--workdir", type=Path, default=REPO / ".demo" / "pool", help="(%(default)s)")
    args = parser.parse_args(argv)
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    with FleetSimulator(roles=[], scenario=SCENARIO, workdir=args.workdir / "sim") as sim:
        config = args.workdir / "pool.yaml"
        config.write_text(json.dumps(serve_pool(sim, {"group": GROUP, "claim_table": TABLE})))
        env = {
            "FLEET_POOL_CONFIG": str(config),
            # The pool's DAG runs as in production: every minute, and on each allocation's asset event.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True",
        }
        airflow = AirflowComponents(
            args.workdir / "airflow",
            fleet_config=REPO / "dags" / "fleet.yaml",
            aws_connection=sim.airflow_connection(),
            extra_env=env,
        )
        try:
            with airflow:
                return _demo(airflow)
        except HarnessError as error:
            print(f"POOL DEMO FAILED: {error}", file=sys.stderr)
            return 1


def _demo(airflow: AirflowComponents) -> int:
    pool = PoolClient(airflow)
    _wait(lambda: airflow.api("GET", "/api/v2/dags/fleet_pool"), "the fleet_pool DAG to be parsed", airflow)
    airflow.api("PATCH", "/api/v2/dags/fleet_pool", {"is_paused": False})
    started = time.monotonic()
    _wait(lambda: pool.status()["idle"] >= BUFFER, "the pool to fill", airflow, timeout=180)
    print(f"The pool filled to {BUFFER} ready instances in {time.monotonic() - started:.1f} s")
    _print_status(pool.status())

    print(f"\n{PROJECTS} projects allocate at once (?wait=120):")
    answers: dict[str, tuple[int, float, str]] = {}
    barrier = threading.Barrier(PROJECTS)

    def allocate(project: str) -> None:
        barrier.wait()
        t0 = time.monotonic()
        response = pool.post("/pool/allocations?wait=120", {"project_id": project})
        body = response.json()
        answers[project] = (response.status_code, time.monotonic() - t0, body.get("instance_id", body))

    threads = [threading.Thread(target=allocate, args=(f"project-{n}",)) for n in range(1, PROJECTS + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for project, (code, seconds, instance) in sorted(answers.items(), key=lambda item: item[1][1]):
        print(f"  {project:<11} HTTP {code}  {seconds:6.2f} s  {instance}")
    _print_status(pool.status())

    destroyed = sorted(answers)[:DESTROYED]
    print(f"\nDestroying the instances of {', '.join(destroyed)}")
    for project in destroyed:
        pool.request("DELETE", f"/pool/allocations/{project}").raise_for_status()
    _wait(
        lambda: (s := pool.status())["idle"] >= BUFFER and s["used"] == PROJECTS - DESTROYED,
        "the pool to refill",
        airflow,
        timeout=180,
    )
    status = pool.status()
    print("The pool refilled:")
    _print_status(status)

    print("\nThe reconciles' decisions (fleet_pool's task logs, from each run's result):")
    for run_id, decisions in _decisions(airflow):
        print(f"  {run_id}")
        for line in decisions:
            print(f"    {line}")

    instances = [instance for code, _, instance in answers.values() if code in (200, 201)]
    ok = len(instances) == PROJECTS and len(set(instances)) == PROJECTS and status["idle"] >= BUFFER
    print("\nPOOL DEMO OK" if ok else "\nPOOL DEMO FAILED: not every project got an instance of its own")
    return 0 if ok else 1


class PoolClient:
    """The pool's API with the harness's admin token."""

    def __init__(self, airflow: AirflowComponents) -> None:
        self.airflow = airflow

    def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.airflow.token()}"}
        return httpx.request(method, f"{self.airflow.api_url}{path}", json=body, headers=headers, timeout=180)

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.request("POST", path, body)

    def status(self) -> dict[str, Any]:
        response = self.request("GET", "/pool/status")
        response.raise_for_status()
        return response.json()


def _print_status(status: dict[str, Any]) -> None:
    keys = ("total", "idle", "booting", "used", "retiring", "desired", "max")
    print("  status: " + ", ".join(f"{key} {status[key]}" for key in keys))


def _decisions(airflow: AirflowComponents) -> list[tuple[str, list[str]]]:
    runs = airflow.api("GET", "/api/v2/dags/fleet_pool/dagRuns", order_by="run_after", limit=100)["dag_runs"]
    found = []
    for run in runs:
        task = f"/api/v2/dags/fleet_pool/dagRuns/{run['dag_run_id']}/taskInstances/reconcile"
        path = f"{task}/xcomEntries/return_value"
        try:
            value = airflow.api("GET", path)["value"]
        except HarnessError:
            continue  # a run still going, or one that failed: its log says why
        value = json.loads(value) if isinstance(value, str) else value
        found.append((f"{run['dag_run_id']} ({run['run_type']})", value["decisions"]))
    return found


def _wait(ready: Any, what: str, airflow: AirflowComponents, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except (HarnessError, httpx.HTTPError, KeyError):
            pass
        airflow.check_processes()
        time.sleep(1)
    raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}\n" + airflow.log_tails())


if __name__ == "__main__":
    sys.exit(main())
