"""Generated fleets: a signer and N worker roles with one fixed-length job each, and what the hosts run.

:func:`fleet_config` is a valid ``dags/fleet.yaml``-format dict with placeholder instance IDs (enough
to time the DAG's parsing); :func:`sim_config` and :func:`for_flow` put it on a simulator's instances.
A host runs the real agent with the command the DAG sends, or, where hundreds of agents would
overload a 2-core machine, :func:`standin_script` as the fleet config's agent command: the
orchestration sees the same shape (the command ends at once, the instance stops itself at the job's end).
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
MAX_RUNTIME = "10m"


def role_names(count: int) -> list[str]:
    """``w001`` … for ``count`` worker roles (zero-padded so that they sort)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"a fleet needs at least 1 worker role, got {count!r}")
    width = max(3, len(str(count)))
    return [f"w{index:0{width}d}" for index in range(1, count + 1)]


def fleet_config(workers: int, *, job_seconds: float = 5.0, poll_interval: float = 5.0) -> dict[str, Any]:
    """A fleet config with a signer and ``workers`` roles of one ``job_seconds`` demo job each."""
    if job_seconds <= 0:
        raise ValueError(f"job_seconds must be positive, got {job_seconds!r}")
    if poll_interval < 1 or poll_interval != round(poll_interval):
        raise ValueError(f"poll_interval: the DAG's durations are whole seconds, got {poll_interval!r}")
    return {
        "timezone": "UTC",
        "schedule": "0 0 * * *",
        "aws_conn_id": "aws_default",
        "region": REGION,
        # Syntactically valid, obviously fake instance IDs (i- and 17 hex digits).
        "signer": {"instance": "i-00000000000000000"},
        "poll_interval": f"{round(poll_interval)}s",
        "boot_timeout": "5m",
        "roles": [
            {
                "name": name,
                "instance": f"i-{index:017x}",
                "max_runtime": MAX_RUNTIME,
                "heartbeat_grace": "2m",
                "jobs": [demo_job(JOB_NAME, seconds=job_seconds, timeout="2m", python=sys.executable)],
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
        max_runtime=MAX_RUNTIME,
        heartbeat_grace="2m",
        heartbeat="5s",
        alert_after="30m",
    )


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
    """``base`` on given instances (role ``i`` on ``workers[i]``), the agent set up as :func:`sim_config`
    sets it (the simulator's own rewrite needs one instance per role name), for a flow's DAG: only the
    first role, named ``one_role`` (a batched flow gives its ``start`` every worker); the stand-in as
    the agent's command when ``standin_seconds`` is given."""
    roles = base["roles"]
    if len(workers) != len(roles):
        raise ValueError(f"{len(workers)} worker instances for {len(roles)} roles")
    roles = [{**role, "instance": worker} for role, worker in zip(roles, workers, strict=True)]
    command = [sys.executable, "-m", "instance_agent"]
    if standin_seconds is not None:
        command = ["bash", "-c", standin_script(standin_seconds), "standin"]
    agent = {
        "command": command,
        "state_dir": "state",
        "log_dir": "logs",
        "shutdown": "ec2",
        "heartbeat": "5s",
    }
    roles = [{**roles[0], "name": one_role}] if one_role else roles
    return {**base, "signer": {"instance": signer}, "roles": roles, "agent": agent}


def standin_script(job_seconds: float) -> str:
    """A shell script: read the instance ID from IMDS, detach a ``job_seconds`` sleep that then writes
    when it ended to ``$HOME/job-ended`` and stops its own instance with one StopInstances (curl)."""
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
