"""Fleet configs (``dags/fleet.yaml`` format) rewritten onto the simulator, and demo jobs to run on it.

Plain YAML and dicts: no DAG model, so the simulator runs without Airflow.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from fleet_sim.simulator import FleetSimulator

SIGNER_ROLE = "signer"
DEFAULT_FLEET_CONFIG = Path(__file__).resolve().parent.parent / "dags" / "fleet.yaml"
DEMO_LOG = "demo-jobs.log"

# A job that prints a line every half second for a while, records its run in $HOME/demo-jobs.log
# (the host's sandbox) and exits with the code it was given; with a 4th argument N > 0, only on
# its first N runs for the run date (the record says how many there were), then with 0.
_DEMO_JOB = """\
import os, sys, time
name, seconds, code = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
fail_runs = int(sys.argv[4]) if len(sys.argv) > 4 else 0
run_date, role = os.environ.get("RUN_DATE", "?"), os.environ.get("ROLE", "?")
record = os.path.join(os.environ.get("HOME") or ".", "demo-jobs.log")
with open(record, "a+") as handle:
    handle.seek(0)
    if fail_runs and sum(line.split()[1:] == [run_date, role, name, "start"] for line in handle) >= fail_runs:
        code = 0
def note(what):
    with open(record, "a") as handle:
        handle.write(f"{time.time():.3f} {run_date} {role} {name} {what}\\n")
note("start")
steps = max(1, int(seconds / 0.5))
for step in range(1, steps + 1):
    print(f"{name}: step {step}/{steps} for {run_date} on {role}", flush=True)
    time.sleep(seconds / steps)
if code:
    print(f"{name}: failing with exit code {code}", file=sys.stderr, flush=True)
note(f"exit {code}")
sys.exit(code)
"""


class FleetConfigError(ValueError):
    pass


def load_fleet_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """A fleet config as a plain dict, from a YAML file or a mapping (copied)."""
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    path = Path(source)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise FleetConfigError(f"{path}: cannot read the fleet config: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise FleetConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise FleetConfigError(f"{path}: expected a mapping at the top level")
    return document


def fleet_roles(config: Mapping[str, Any]) -> dict[str, int]:
    """``{role: instances}`` a config needs: the signer, and each role's instance or candidates."""
    roles: dict[str, int] = {}
    if config.get("signer"):
        roles[SIGNER_ROLE] = 1
    for index, role in enumerate(config.get("roles") or []):
        name = role.get("name") if isinstance(role, Mapping) else None
        if not isinstance(name, str) or not name:
            raise FleetConfigError(f"roles[{index}].name: expected a role name, got {name!r}")
        if name in roles:
            raise FleetConfigError(f"roles[{index}].name: {name!r} is used twice (or is the signer's)")
        candidates = role.get("candidates")
        roles[name] = len(candidates) if isinstance(candidates, list) and candidates else 1
    return roles


def demo_job(
    name: str,
    *,
    seconds: float = 2.0,
    exit_code: int = 0,
    fail_runs: int = 0,
    hang: bool = False,
    timeout: str | float = "1m",
    rerun_on_interrupt: bool = False,
    python: str = sys.executable,
) -> dict[str, Any]:
    """A job (fleet config format) that prints progress for ``seconds`` and exits ``exit_code``: on
    its first ``fail_runs`` runs for a date only if that is > 0 (a retry then succeeds); ``hang``:
    sleeps a day, for its ``timeout`` to end. Each run is logged in ``$HOME/demo-jobs.log``."""
    argv = [python, "-c", _DEMO_JOB, name, str(86400 if hang else seconds), str(exit_code)]
    argv += [str(fail_runs)] if fail_runs else []
    return {"name": name, "argv": argv, "timeout": timeout, "rerun_on_interrupt": rerun_on_interrupt}


def demo_runs(sandbox: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The runs recorded in a host's ``demo-jobs.log``: ``{t, date, role, job, event}``."""
    path = Path(sandbox) / DEMO_LOG
    records = [line.split(" ", 4) for line in path.read_text().splitlines()] if path.exists() else []
    return [
        {"t": float(t), "date": date, "role": role, "job": job, "event": event}
        for t, date, role, job, event in (parts for parts in records if len(parts) == 5)
    ]


def sim_fleet_config(
    base: str | os.PathLike[str] | Mapping[str, Any] | None,
    sim: FleetSimulator,
    *,
    jobs: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    keep_jobs: bool = False,
    job_seconds: float = 2.0,
    failing: Collection[str] = (),
    failing_once: Collection[str] = (),
    hanging: Collection[str] = (),
    max_runtime: str = "5m",
    heartbeat_grace: str = "1m",
    heartbeat: str = "5s",
    alert_after: str = "10m",
) -> dict[str, Any]:
    """``base`` (default: the simulator's config, else ``dags/fleet.yaml``) rewritten to run on ``sim``:
    the simulated instances, the agent from this checkout with ``--shutdown ec2`` (state and logs in
    each sandbox), short durations, and :func:`demo_job` s of the jobs' names (``failing``,
    ``failing_once``, ``hanging``: by name), unless ``keep_jobs`` or ``jobs={role: [job, ...]}``."""
    config = load_fleet_config(base if base is not None else (sim.config or DEFAULT_FLEET_CONFIG))
    if config.get("signer") is not None:
        config["signer"] = {**config["signer"], "instance": sim.instance_for(SIGNER_ROLE)}
    for role in config.get("roles") or []:
        name = role["name"]
        if role.get("candidates"):
            role["candidates"] = sim.instances_for(name)
            role.pop("instance", None)
        else:
            role["instance"] = sim.instance_for(name)
        role.update(max_runtime=max_runtime, heartbeat_grace=heartbeat_grace)
        if jobs is not None and name in jobs:
            role["jobs"] = [dict(job) for job in jobs[name]]
        elif not keep_jobs:
            role["jobs"] = [
                demo_job(
                    job["name"],
                    seconds=job_seconds,
                    exit_code=1 if job["name"] in failing or job["name"] in failing_once else 0,
                    fail_runs=1 if job["name"] in failing_once and job["name"] not in failing else 0,
                    hang=job["name"] in hanging,
                    timeout="1m",
                    rerun_on_interrupt=bool(job.get("rerun_on_interrupt", False)),
                )
                for job in role.get("jobs") or []
            ]
    config["region"] = sim.region
    config["alert_after"] = alert_after
    config["agent"] = {
        **(config.get("agent") or {}),
        "command": [sys.executable, "-m", "instance_agent"],
        "state_dir": "state",
        "log_dir": "logs",
        "shutdown": "ec2",
        "heartbeat": heartbeat,
    }
    return config
