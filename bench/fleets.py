"""Generated fleets: a signer and N worker roles with one fixed-length job each, and what the hosts run.

:func:`fleet_config` is a valid ``dags/fleet.yaml``-format dict with placeholder instance IDs
(enough to time the DAG's parsing); :func:`sim_config` rewrites it onto a running simulator
(its instances, the agent from this checkout with ``--shutdown ec2``), which is what the DAGs
run against. Every worker runs :func:`fleet_sim.demo_job` for ``job_seconds``.

Two things a host can be asked to run:

- the real agent, with the command the DAG itself sends;
- at sizes where hundreds of real agents would overload a 2-core machine, a stand-in
  (:func:`standin_script`): it reads its instance ID from IMDS like the agent, runs ``sleep``
  detached for the job's length, writes when it ended to ``$HOME/job-ended``, then stops its own
  instance with one ``StopInstances`` call (curl, no SDK). The orchestration sees the same
  shape as with the agent: the command ends at once, the instance stops itself at the job's end.
  It is the fleet config's agent command (:func:`for_flow`), so the DAGs send it unchanged.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from fleet_sim import demo_job, sim_fleet_config

if TYPE_CHECKING:
    from fleet_sim import FleetSimulator

SIGNER_ROLE = "signer"
JOB_NAME = "job"
# The stand-in's record of its job's end, in the host's sandbox ($HOME).
STANDIN_JOB_END = "job-ended"
REGION = "us-east-1"


def role_names(count: int) -> list[str]:
    """``w001`` … for ``count`` worker roles (zero-padded so that they sort)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"a fleet needs at least 1 worker role, got {count!r}")
    width = max(3, len(str(count)))
    return [f"w{index:0{width}d}" for index in range(1, count + 1)]


def placeholder_instance_id(index: int) -> str:
    """A syntactically valid, obviously fake instance ID (``i-`` + 17 hex digits)."""
    return f"i-{index:017x}"


def fleet_config(
    workers: int,
    *,
    job_seconds: float = 5.0,
    poll_interval: float = 5.0,
    boot_timeout: str = "5m",
    max_runtime: str = "10m",
    python: str = sys.executable,
) -> dict[str, Any]:
    """A fleet config with a signer and ``workers`` roles of one ``job_seconds`` demo job each."""
    if job_seconds <= 0:
        raise ValueError(f"job_seconds must be positive, got {job_seconds!r}")
    if poll_interval <= 0:
        raise ValueError(f"poll_interval must be positive, got {poll_interval!r}")
    return {
        "timezone": "UTC",
        "schedule": "0 0 * * *",
        "aws_conn_id": "aws_default",
        "region": REGION,
        "signer": {"instance": placeholder_instance_id(0)},
        "poll_interval": _duration(poll_interval),
        "boot_timeout": boot_timeout,
        "roles": [
            {
                "name": name,
                "instance": placeholder_instance_id(index),
                "max_runtime": max_runtime,
                "heartbeat_grace": "2m",
                "jobs": [demo_job(JOB_NAME, seconds=job_seconds, timeout="2m", python=python)],
            }
            for index, name in enumerate(role_names(workers), start=1)
        ],
    }


def sim_config(base: Mapping[str, Any], sim: FleetSimulator) -> dict[str, Any]:
    """``base`` on the simulator's instances, the agent from this checkout, jobs kept as they are."""
    return sim_fleet_config(
        base,
        sim,
        keep_jobs=True,
        max_runtime=base["roles"][0]["max_runtime"],
        heartbeat_grace="2m",
        heartbeat="5s",
        alert_after="30m",
    )


def assigned(base: Mapping[str, Any], signer: str, workers: list[str]) -> dict[str, Any]:
    """``base`` on given instances (role ``i`` on ``workers[i]``), with the agent set up as
    :func:`sim_config` sets it (the simulator's own rewrite needs one instance per role name)."""
    roles = base["roles"]
    if len(workers) != len(roles):
        raise ValueError(f"{len(workers)} worker instances for {len(roles)} roles")
    return {
        **base,
        "signer": {"instance": signer},
        "roles": [{**role, "instance": worker} for role, worker in zip(roles, workers, strict=True)],
        "agent": {
            "command": [sys.executable, "-m", "instance_agent"],
            "state_dir": "state",
            "log_dir": "logs",
            "shutdown": "ec2",
            "heartbeat": "5s",
        },
    }


def write_yaml(path: str | os.PathLike[str], data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def for_flow(
    base: Mapping[str, Any],
    signer: str,
    workers: list[str],
    *,
    one_role: str | None = None,
    standin_seconds: float | None = None,
) -> dict[str, Any]:
    """``base`` on given instances (:func:`assigned`), for a flow's DAG.

    :param one_role: keep only the first role, under this name, on the first worker (a batched
        flow gives its ``start`` every worker)
    :param standin_seconds: the hosts run the stand-in (:func:`standin_script`) for this long,
        as the agent's command: the DAG sends it where it would send the agent
    """
    data = assigned(base, signer, workers)
    if one_role:
        data["roles"] = [{**data["roles"][0], "name": one_role}]
    if standin_seconds is not None:
        data["agent"]["command"] = ["bash", "-c", standin_script(standin_seconds), "standin"]
    return data


def standin_script(job_seconds: float) -> str:
    """A shell script: detach a ``job_seconds`` sleep, then the host stops its own instance."""
    if job_seconds <= 0:
        raise ValueError(f"job_seconds must be positive, got {job_seconds!r}")
    stop = (
        'curl -s -m 60 -o /dev/null "$AWS_ENDPOINT_URL" '
        '-H "Authorization: AWS4-HMAC-SHA256 Credential=$AWS_ACCESS_KEY_ID/20260101/'
        '$AWS_DEFAULT_REGION/ec2/aws4_request, SignedHeaders=host, Signature=0" '
        '--data "Action=StopInstances&Version=2016-11-15&InstanceId.1=$2"'
    )
    job = f'sleep "$1"; date +%s.%N > "$HOME/{STANDIN_JOB_END}"; {stop}'
    return "\n".join(
        [
            'M="$AWS_EC2_METADATA_SERVICE_ENDPOINT"',
            'T=$(curl -s -m 30 -X PUT "$M/latest/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 300")',
            'ID=$(curl -s -m 30 -H "X-aws-ec2-metadata-token: $T" "$M/latest/meta-data/instance-id")',
            'case "$ID" in i-*) ;; *) echo "no instance id from IMDS" >&2; exit 1;; esac',
            f"setsid bash -c '{job}' standin {job_seconds:g} \"$ID\" </dev/null >/dev/null 2>&1 &",
            'echo "stand-in job started on $ID"',
        ]
    )


def standin_job_end(sandbox: str | os.PathLike[str]) -> float | None:
    """When the stand-in's job ended on a host (Unix time), ``None`` if it has not."""
    try:
        return float((Path(sandbox) / STANDIN_JOB_END).read_text().strip())
    except (OSError, ValueError):
        return None


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole != seconds or whole < 1:
        raise ValueError(f"the DAG's durations are whole seconds, got {seconds!r}")
    return f"{whole}s"
