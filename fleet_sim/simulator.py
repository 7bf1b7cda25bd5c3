"""The simulator as one object: start it, point AWS clients at it, inject faults, read what happened
(fleet_sim/README.md). One per process at a time: it owns moto's in-process state, and resets it."""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from fleet_sim.ec2 import Ec2Lifecycle
from fleet_sim.faults import TIMED_KINDS
from fleet_sim.fleet import ROLE_TAG, Fleet
from fleet_sim.fleet_config import fleet_roles, load_fleet_config
from fleet_sim.front import Front
from fleet_sim.hosts import Host
from fleet_sim.imds import ImdsService
from fleet_sim.scenario import FaultSpec, Scenario, load_scenario
from fleet_sim.ssm import SsmService, ping_status
from fleet_sim.timeline import parse_iso

log = logging.getLogger("fleet_sim")

REPO_ROOT = str(Path(__file__).resolve().parent.parent)
SYNC_INTERVAL = 0.5
IMAGE_NAME = "fleet-sim-al2023"
AMIS_VARIABLE = "MOTO_EC2_LOAD_DEFAULT_AMIS"
_active_lock = threading.Lock()
_active: FleetSimulator | None = None
_session_lock = threading.Lock()


@functools.cache
def _session() -> Any:
    """One session for all clients: it caches the service models, the costly part of a new client."""
    import boto3

    return boto3.session.Session()


class SimulatorError(RuntimeError):
    pass


class _QuietHandler(MotoRequestHandler):
    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        log.debug("%s %s", self.requestline, code)


class FleetSimulator:
    """A simulated EC2 fleet behind one AWS endpoint on 127.0.0.1.

    :param fleet_config: a fleet config (path or dict): an instance per role or candidate, and the signer's
    :param roles: instead, or besides: role names, or ``{role: number of instances}``
    :param workdir: host sandboxes and command output (default: a temporary directory, removed on close)
    """

    def __init__(
        self,
        *,
        fleet_config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        roles: list[str] | Mapping[str, int] | None = None,
        scenario: Scenario | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        workdir: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ):
        self.config = load_fleet_config(fleet_config) if fleet_config is not None else None
        self._roles: dict[str, int] = fleet_roles(self.config) if self.config else {}
        if isinstance(roles, Mapping):
            self._roles.update({str(name): int(count) for name, count in roles.items()})
        elif roles:
            self._roles.update(dict.fromkeys(roles, 1))
        self.scenario = load_scenario(scenario)
        self.region = region or (self.config or {}).get("region") or "us-east-1"
        self.account_id = account_id
        self.bind_host = host
        self.port = port
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="fleet-sim-")).resolve()
        self.fleet: Fleet | None = None  # type: ignore[assignment]
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def __enter__(self) -> FleetSimulator:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def start(self) -> FleetSimulator:
        global _active
        with _active_lock:
            if _active is not None:
                raise SimulatorError(
                    "another FleetSimulator is running in this process (it owns moto's state); close it first"
                )
            _active = self
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        from moto.moto_api._internal import moto_api_backend

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.fleet = Fleet(
            scenario=self.scenario,
            region=self.region,
            account_id=self.account_id,
            workdir=self.workdir,
            sim_id=uuid.uuid4().hex[:12],
            python_bin=os.path.dirname(sys.executable),
            repo_root=REPO_ROOT,
        )
        # moto loads ~1,300 default AMIs into each EC2 backend it makes, a second per start; the
        # simulator's gets the one image its instances use instead. The variable is moto's,
        # read while backends are made: set only for that moment.
        previous = os.environ.get(AMIS_VARIABLE)
        os.environ.setdefault(AMIS_VARIABLE, "false")
        try:
            moto_api_backend.reset()  # a clean account: no instances of an earlier simulator
            _ = self.fleet.ec2_backend
        finally:
            if previous is None:
                os.environ.pop(AMIS_VARIABLE, None)
        self.lifecycle = Ec2Lifecycle(self.fleet)
        self.ssm = SsmService(self.fleet)
        self.imds = ImdsService(self.fleet)

        front = Front(self, DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self.bind_host, self.port, front, threaded=True, request_handler=_QuietHandler
        )
        self.port = self._server.server_port
        shown = "127.0.0.1" if self.bind_host in ("0.0.0.0", "") else self.bind_host
        self.fleet.endpoint_url = f"http://{shown}:{self.port}"
        self._thread = threading.Thread(
            target=lambda: self._server.serve_forever(poll_interval=0.05), name="fleet-sim-front", daemon=True
        )
        self._thread.start()

        self._create_instances()
        for host in list(self.fleet.hosts.values()):
            self.lifecycle.arm(host, "start")
        self.fleet.scheduler.call_later(SYNC_INTERVAL, self._periodic_sync)
        log.info("fleet simulator on %s: %s", self.endpoint_url, json.dumps(self.roles()))

    def _create_instances(self) -> None:
        if not self._roles:
            return
        ec2 = self.client("ec2")
        with self.fleet.lock:
            backend = self.fleet.ec2_backend
            images = backend.describe_images() or [
                backend.register_image(name=IMAGE_NAME, description="the simulated hosts' image")
            ]
            image_id = images[0].id
        self.fleet.creating = True
        try:
            for role, count in self._roles.items():
                tags = [{"Key": "Name", "Value": role}, {"Key": ROLE_TAG, "Value": role}]
                ec2.run_instances(
                    ImageId=image_id,
                    MinCount=count,
                    MaxCount=count,
                    InstanceType=self.scenario.instance_type,
                    TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
                )
        finally:
            self.fleet.creating = False

    def close(self) -> None:
        """Stop every host process, the scheduler and the server; idempotent."""
        global _active
        if self._closed:
            return
        self._closed = True
        try:
            if self.fleet is not None:
                self.fleet.scheduler.stop()
                if getattr(self, "ssm", None) is not None:
                    self.ssm.close()
                for host in list(self.fleet.hosts.values()):
                    host.signal_all(signal.SIGKILL)  # detached agents and jobs too
            if self._server is not None:
                self._server.shutdown()
                self._server.server_close()
            if self._thread is not None:
                self._thread.join(5)
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
        finally:
            with _active_lock:
                if _active is self:
                    _active = None

    @property
    def endpoint_url(self) -> str:
        return self.fleet.endpoint_url

    def roles(self) -> dict[str, list[str]]:
        """``{role: [instance ids]}``; a role with candidates has one instance per candidate."""
        with self.fleet.lock:
            return self.fleet.roles()

    def instances_for(self, role: str) -> list[str]:
        roles = self.roles()
        if not roles.get(role):
            raise KeyError(f"no simulated instance for role {role!r}; roles are {sorted(roles)}")
        return roles[role]

    def instance_for(self, role: str) -> str:
        return self.instances_for(role)[0]

    def host(self, instance_id: str) -> Host:
        return self.fleet.host(instance_id)

    def state(self, instance_id: str) -> str:
        with self.fleet.lock:
            self.lifecycle.sync()
            return self.fleet.host(instance_id).state

    def describe(self) -> dict[str, Any]:
        """What ``serve`` prints: the endpoint, the region, the roles and each host."""
        with self.fleet.lock:
            return {
                "endpoint_url": self.endpoint_url,
                "region": self.region,
                "airflow_connection": self.airflow_connection(),
                "workdir": str(self.workdir),
                "roles": self.fleet.roles(),
                "hosts": {
                    host.instance_id: {
                        "role": host.role,
                        "state": host.state,
                        "ssm": ping_status(host),
                        "sandbox": str(host.sandbox),
                        "imds": self.fleet.imds_url(host),
                        "marker": host.marker,  # FLEET_SIM_HOST of each of its processes
                    }
                    for host in self.fleet.hosts.values()
                },
            }

    def airflow_connection(self) -> str:
        """An Airflow AWS connection (JSON, for ``AIRFLOW_CONN_AWS_DEFAULT``) to the simulator."""
        extra = {"region_name": self.region, "endpoint_url": self.endpoint_url}
        return json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra})

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client pointed at the simulator (``config=`` and other kwargs pass through)."""
        kwargs = {
            "region_name": self.region,
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "aws_session_token": None,
            **kwargs,
        }
        with _session_lock:
            return _session().client(service, **kwargs)

    def wait_for_state(self, instance_id: str, state: str, timeout: float = 30.0) -> float:
        """Block until the instance is in ``state``; returns the seconds waited."""
        began = time.monotonic()
        while self.state(instance_id) != state:
            if time.monotonic() - began > timeout:
                raise TimeoutError(
                    f"{instance_id} not {state} after {timeout} s (it is {self.state(instance_id)})"
                )
            time.sleep(0.02)
        return time.monotonic() - began

    def inject(self, fault: FaultSpec | Mapping[str, Any]) -> dict[str, Any]:
        """Add a fault (the scenario's format, e.g. ``{"kind": "throttle", ...}``); returns it."""
        with self.fleet.lock:
            active = self.fleet.faults.add(dict(fault) if isinstance(fault, Mapping) else fault)
            if active.spec.kind in TIMED_KINDS and active.spec.since == "start":
                for host in self.fleet.hosts.values():
                    self.lifecycle.arm(host, "start")
            return active.to_dict()

    def faults(self) -> list[dict[str, Any]]:
        with self.fleet.lock:
            return [fault.to_dict() for fault in self.fleet.faults.all()]

    def remove_fault(self, fault_id: int) -> None:
        with self.fleet.lock:
            self.fleet.faults.remove(fault_id)

    def timeline(self, instance_id: str | None = None, event: str | None = None) -> list[dict[str, Any]]:
        return self.fleet.timeline.events(instance_id, event)

    def api_calls(self, since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
        """Every AWS API call answered in ``[since, until)`` (see :class:`~fleet_sim.timeline.ApiCallLog`)."""
        return self.fleet.api_calls.calls(since, until)

    def agent_state(self, instance_id: str) -> dict[str, Any] | None:
        """The agent's latest state file on the host (``<sandbox>/state/<date>.json``)."""
        files = sorted((self.fleet.host(instance_id).sandbox / "state").glob("????-??-??.json"))
        return json.loads(files[-1].read_text()) if files else None

    def worker_idle(self, instance_id: str) -> dict[str, Any]:
        """How long the instance ran after its last job ended: ``idle_seconds`` from the end in the
        agent's state file to ``stopping`` (when billing ends), ``None`` until both happened."""
        state = self.agent_state(instance_id) or {}
        ends = (parse_iso(job.get("ended_at")) for job in (state.get("jobs") or {}).values())
        last_end = max((end for end in ends if end is not None), default=None)
        changes = self.timeline(instance_id, "state")
        stopping = [e["t"] for e in changes if e["to"] == "stopping"]
        stopped = [e["t"] for e in changes if e["to"] == "stopped"]
        stop_at = next((t for t in stopping if last_end is not None and t >= last_end), None)
        stopped_at = next((t for t in stopped if stop_at is not None and t >= stop_at), None)
        return {
            "last_job_end": last_end,
            "stopping_at": stop_at,
            "stopped_at": stopped_at,
            "idle_seconds": None if stop_at is None or last_end is None else round(stop_at - last_end, 3),
        }

    def _periodic_sync(self) -> None:
        if self._closed:
            return
        self.lifecycle.sync()
        self.fleet.scheduler.call_later(SYNC_INTERVAL, self._periodic_sync)
