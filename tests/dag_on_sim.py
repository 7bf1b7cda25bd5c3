"""The real fleet_daily DAG against the fleet simulator: fixtures for tests/e2e and tests/dags.

``run_fleet(roles={...}, scenario={...})`` starts a :class:`~fleet_sim.FleetSimulator` for a small
fleet (a signer and the given roles), writes the fleet config rewritten onto it, points
``FLEET_CONFIG`` and the ``aws_default`` connection at it, and builds the DAG from that file as
``dags/fleet_daily.py`` does. ``fleet.run()`` runs it with ``dag.test()``: every task and every
trigger in this process, one at a time (the roles' steps interleave, each trigger runs inline).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import pendulum
import pytest
import yaml
from fleet_dag.builder import build_dag
from fleet_dag.config import CONFIG_ENV_VAR, load_config
from fleet_testing import FAST, share_botocore_loader
from operators.fleet_notifiers import FleetLogNotifier

from fleet_sim import FleetSimulator, demo_runs, sim_fleet_config

LOGICAL_DATE = pendulum.datetime(2026, 11, 23, tz="UTC")
RUN_DATE = "2026-11-23"
# Each role's task group, in order (docs/architecture.md, "The flow of fleet_daily").
CHAIN = ("skip_if_done", "start", "wait_running", "wait_ssm_online", "run_agent", "wait_stopped", "report")
PLACEHOLDER = "i-{:017x}"  # sim_fleet_config replaces every instance ID with a simulated one


def base_fleet(roles: Sequence[str], candidates: Mapping[str, int]) -> dict[str, Any]:
    """A small fleet: a signer and ``roles`` (one instance each, or ``candidates[role]`` of them)."""
    ids = iter(range(1, 1000))
    entries = []
    for name in roles:
        entry: dict[str, Any] = {"name": name, "max_runtime": "30s", "jobs": []}
        if candidates.get(name):
            entry["candidates"] = [PLACEHOLDER.format(next(ids)) for _ in range(candidates[name])]
        else:
            entry["instance"] = PLACEHOLDER.format(next(ids))
        entries.append(entry)
    return {
        "timezone": "UTC",
        "schedule": "0 0 * * *",
        "region": "us-east-1",
        "signer": {"instance": PLACEHOLDER.format(0xABC)},
        "roles": entries,
        "poll_interval": "1s",
        "boot_timeout": "30s",
    }


@dataclass
class Fleet:
    """A started simulator, the fleet config written for it, and the DAG built from that file."""

    sim: FleetSimulator
    config: dict[str, Any]
    dag: Any
    run_date: ClassVar[str] = RUN_DATE  # of LOGICAL_DATE, the default run's date
    chain: ClassVar[tuple[str, ...]] = CHAIN

    def run(self, *, force: bool = False, logical_date: Any = LOGICAL_DATE) -> Any:
        """One run of the DAG for ``logical_date`` with ``dag.test()``; returns the DagRun."""
        return self.dag.test(logical_date=logical_date, run_conf={"force": force})

    # -- the simulated fleet ----------------------------------------------------------------------

    def instance(self, role: str) -> str:
        return self.sim.instance_for(role)

    @property
    def signer(self) -> str:
        return self.sim.instance_for("signer")

    def runs_on(self, instance_id: str) -> list[dict[str, Any]]:
        """The demo job runs recorded on one host (``{t, date, role, job, event}``)."""
        return demo_runs(self.sim.host(instance_id).sandbox)

    def runs(self, role: str) -> list[dict[str, Any]]:
        """The demo job runs recorded on every instance of the role, oldest first."""
        found = [run for instance_id in self.sim.instances_for(role) for run in self.runs_on(instance_id)]
        return sorted(found, key=lambda run: run["t"])

    def starts(self, role: str) -> Counter[str]:
        """How many times each of the role's jobs started."""
        return Counter(run["job"] for run in self.runs(role) if run["event"] == "start")

    def states(self, instance_id: str, since: float | None = None) -> list[str]:
        """The instance's EC2 states in order (``to`` of each state change), since ``since``."""
        return [
            event["to"]
            for event in self.sim.timeline(instance_id, "state")
            if since is None or event["t"] >= since
        ]

    def forced_stops(self, instance_id: str) -> list[dict[str, Any]]:
        """The stops that killed the host's processes at once (StopInstances with Force=true)."""
        return [
            event
            for event in self.sim.timeline(instance_id, "processes_signalled")
            if event["signal"] == "SIGKILL" and event["reason"] in ("forced stop", "instance stopping")
        ]

    def final_states(self) -> dict[str, str]:
        """Every simulated instance's EC2 state now."""
        return {
            instance_id: self.sim.state(instance_id)
            for instance_ids in self.sim.roles().values()
            for instance_id in instance_ids
        }

    # -- the DAG run ------------------------------------------------------------------------------

    @staticmethod
    def task_states(dag_run: Any) -> dict[str, str | None]:
        """``{task_id: state}`` of a finished run."""
        return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}

    def role_states(self, dag_run: Any, role: str) -> dict[str, str | None]:
        """``{step: state}`` of one role's task group, in the group's order."""
        states = self.task_states(dag_run)
        return {step: states[f"{role}.{step}"] for step in CHAIN}


@pytest.fixture
def run_fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: None) -> Iterator[Any]:
    """``run_fleet(roles={role: [job, ...]}, ...)``: a started simulator and the DAG built on it.

    :param roles: each worker role's jobs (``demo_job(...)`` specs), in DAG order
    :param candidates: ``{role: n}`` gives a role ``n`` candidate instances instead of one
    :param role_settings: per-role overrides in the rewritten config (``max_runtime``, ...)
    :param scenario: the simulator's scenario (fast timings unless it sets its own)
    :param connection_extra: merged into the ``aws_default`` connection's ``extra``
    :param config_kwargs: passed to :func:`fleet_sim.sim_fleet_config` (``heartbeat``, ...)
    """
    share_botocore_loader(monkeypatch)
    started: list[FleetSimulator] = []

    def start(
        roles: Mapping[str, Sequence[Mapping[str, Any]]],
        *,
        candidates: Mapping[str, int] | None = None,
        role_settings: Mapping[str, Mapping[str, Any]] | None = None,
        scenario: Mapping[str, Any] | None = None,
        connection_extra: Mapping[str, Any] | None = None,
        **config_kwargs: Any,
    ) -> Fleet:
        base = base_fleet(list(roles), candidates or {})
        sim = FleetSimulator(
            fleet_config=base,
            scenario={**FAST, **(scenario or {})},
            workdir=tmp_path / f"sim{len(started)}",
        )
        started.append(sim.start())
        config_kwargs.setdefault("heartbeat", "1s")
        config_kwargs.setdefault("max_runtime", "30s")
        config = sim_fleet_config(base, sim, jobs=roles, **config_kwargs)
        for role in config["roles"]:
            role.update((role_settings or {}).get(role["name"], {}))
        path = tmp_path / "fleet.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
        connection = json.loads(sim.airflow_connection())
        connection["extra"].update(connection_extra or {})
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
        dag = build_dag(load_config())
        # Airflow 3.3.2's dag.test() crashes at the end of a run of a DAG with a deadline
        # (apache/airflow#73428); tests/dags/test_fleet_daily_dag.py checks the deadline itself.
        dag.deadline = None
        return Fleet(sim=sim, config=config, dag=dag)

    yield start
    for sim in started:
        sim.close()


@pytest.fixture
def notified() -> Iterator[list[dict[str, Any]]]:
    """The contexts the DAG's failure notifier (the default: the log) was called with.

    dag.test() hands failure callbacks the serialized DAG, on which a notifier cannot render its
    templates (the DAG processor gives them the real one): the call itself is what is checked.
    """
    calls: list[dict[str, Any]] = []
    with mock.patch.object(
        FleetLogNotifier, "__call__", autospec=True, side_effect=lambda _self, context: calls.append(context)
    ):
        yield calls
