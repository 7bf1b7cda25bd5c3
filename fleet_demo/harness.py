"""Real Airflow (scheduler, triggerer, DAG processor, API server) in subprocesses, driven by REST.

```python
with FleetSimulator(fleet_config="dags/fleet.yaml", workdir=tmp / "sim") as sim:
    config = write_sim_config(sim, tmp / "fleet.sim.yaml")       # the DAG's FLEET_CONFIG
    with AirflowHarness(tmp / "airflow", fleet_config=config, aws_connection=sim.airflow_connection()) as af:
        af.wait_for_dag()                                          # parsed, no import errors, unpaused
        run_id = af.trigger("2026-11-23")                          # logical date 2026-11-23T00:00Z
        result = af.wait_for_run(run_id, timeout=240)              # a RunResult
        result.state, result.tasks["tasks.report"].state, af.xcom(run_id, "tasks.report")
        runs = af.wait_for_backfill(af.backfill("2026-11-20", "2026-11-21"), timeout=400)
```

Every component runs as ``python -m airflow <component>`` in a session of its own, with an
isolated ``AIRFLOW_HOME`` (SQLite, ``LocalExecutor``, ``SimpleAuthManager`` with everyone an
admin) and its output in ``<home>/<component>.log``. Every wait is bounded; a failure raises
:class:`HarnessError` with the tail of the log that explains it.

**Scheduled runs are off** (``[scheduler] use_job_schedule = False``). Airflow runs nothing of a
paused DAG, not even a backfill or a manual run, so the harness unpauses ``fleet_daily``; and
an unpaused DAG with ``catchup=False`` would at once get the run of the latest midnight
(``CronTriggerTimetable`` always schedules the most recent past time). With the scheduler's cron
switched off, the only runs are the ones the caller asks for, while the DAG keeps its cron
timetable, which backfills need (a DAG with ``schedule=None`` cannot be backfilled).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from fleet_demo import run_status
from fleet_demo.run_status import TERMINAL_RUN_STATES, RunResult, TaskResult, parse

__all__ = ["AirflowHarness", "HarnessError", "RunResult", "TaskResult"]

REPO = Path(__file__).resolve().parent.parent
DAG_ID = "fleet_daily"
COMPONENTS = ("dag-processor", "scheduler", "triggerer", "api-server")
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
LOG_TAIL_LINES = 40
# A run still queued, or with no task started, this long after its wait began is stuck: the wait
# ends with the reason instead of running out its whole timeout.
STALL_AFTER = 60.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class HarnessError(RuntimeError):
    """Airflow did not do what was asked in time; the message carries the relevant log tails."""


class AirflowHarness:
    """Airflow 3's four components against one fleet config and one AWS connection.

    :param home: the ``AIRFLOW_HOME`` to use (created; holds the SQLite database, the
        components' logs ``<component>.log`` and the task logs under ``logs/``)
    :param fleet_config: the fleet config the DAG reads (``FLEET_CONFIG``), e.g. the simulator's
        rewrite of ``dags/fleet.yaml``
    :param aws_connection: ``AIRFLOW_CONN_AWS_DEFAULT`` (JSON), e.g. ``sim.airflow_connection()``
    :param port: the API server's port (0: a free one)
    :param extra_env: more environment for every component (``AIRFLOW__SECTION__KEY`` overrides)
    :param startup_timeout: seconds for the database migration and for the components to be healthy
    """

    def __init__(
        self,
        home: str | os.PathLike[str],
        *,
        fleet_config: str | os.PathLike[str],
        aws_connection: str,
        port: int = 0,
        extra_env: Mapping[str, str] | None = None,
        startup_timeout: float = 180.0,
        repo: str | os.PathLike[str] = REPO,
    ):
        self.home = Path(home).resolve()
        self.repo = Path(repo).resolve()
        self.fleet_config = Path(fleet_config).resolve()
        self.aws_connection = aws_connection
        self.port = port or _free_port()
        self.extra_env = dict(extra_env or {})
        self.startup_timeout = startup_timeout
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._token: str | None = None
        self._log_handles: list[Any] = []

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_path(self, component: str) -> Path:
        """``<home>/<component>.log``: a component's output (``db-migrate`` too)."""
        return self.home / f"{component}.log"

    def environment(self) -> dict[str, str]:
        """The environment of every component: this process's, without its Airflow or AWS settings."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW", "AWS_", "FLEET_")) and key not in ("PYTHONPATH", "_AIRFLOW")
        }
        bin_dir = str(Path(sys.executable).parent)
        env.update(
            {
                "PATH": os.pathsep.join([bin_dir, env.get("PATH", "")]),
                "PYTHONPATH": str(self.repo),  # the operators import instance_agent.protocol
                "AIRFLOW_HOME": str(self.home),
                "FLEET_CONFIG": str(self.fleet_config),
                "AIRFLOW_CONN_AWS_DEFAULT": self.aws_connection,
                # Nothing may reach real AWS: no instance-metadata credentials either.
                "AWS_EC2_METADATA_DISABLED": "true",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.repo / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.repo / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                # One secret for every component: the API server signs the tasks' tokens with it.
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                # Only the runs the caller asks for (see the module's docstring).
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                # Quick reactions: seconds, not Airflow's production minutes.
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "5",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                # A task's supervisor notices its process exited (say, on deferral) within this
                # many seconds; the scheduler gets the exit a little later. Airflow 3.3.2 fails a
                # deferred task whose trigger fired and whose resumed attempt was queued before
                # that stale exit arrived (apache/airflow#71580, #72716): keep the window short.
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self) -> AirflowHarness:
        """Migrate the database, start the four components, wait until they are healthy."""
        if self.processes:
            raise HarnessError("the harness is already started")
        self.home.mkdir(parents=True, exist_ok=True)
        if not self.fleet_config.is_file():
            raise HarnessError(f"no fleet config at {self.fleet_config}")
        env = self.environment()
        self._token = None
        try:
            self._migrate(env)
            for component in COMPONENTS:
                self._spawn(component, env)
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every component's process group, SIGKILL what is left after ``timeout``; idempotent."""
        # The scheduler first: it stops handing out tasks; the API server last: tasks call it.
        order = [
            name
            for name in ("scheduler", "triggerer", "dag-processor", "api-server")
            if name in self.processes
        ]
        for name in order:
            _signal_group(self.processes[name], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in order:
            process = self.processes[name]
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            # Task processes and executor workers live in the group too, even once the leader exited.
            _signal_group(process, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
        self.processes.clear()
        for handle in self._log_handles:
            handle.close()
        self._log_handles.clear()

    def __enter__(self) -> AirflowHarness:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _migrate(self, env: dict[str, str]) -> None:
        with open(self.log_path("db-migrate"), "wb") as log:
            try:
                result = subprocess.run(
                    [sys.executable, "-m", "airflow", "db", "migrate"],
                    env=env,
                    cwd=self.home,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=self.startup_timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise HarnessError(
                    f"`airflow db migrate` did not finish in {self.startup_timeout:.0f} s\n"
                    + self.log_tail("db-migrate")
                ) from None
        if result.returncode != 0:
            raise HarnessError(
                f"`airflow db migrate` exited {result.returncode}\n" + self.log_tail("db-migrate")
            )

    def _spawn(self, component: str, env: dict[str, str]) -> None:
        log = open(self.log_path(component), "ab")  # ruff: ignore[open-file-with-context-handler] -- open as long as the process runs
        self._log_handles.append(log)
        self.processes[component] = subprocess.Popen(
            [sys.executable, "-m", "airflow", component],
            env=env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stop() reaches executor workers and tasks too
        )

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        health: Any = None
        while time.monotonic() < deadline:
            self.check_processes()
            with contextlib.suppress(OSError, HarnessError):
                health = self._request("GET", "/api/v2/monitor/health", auth=False)
                statuses = [
                    (health.get(part) or {}).get("status")
                    for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                ]
                if all(status == "healthy" for status in statuses):
                    return
            time.sleep(1)
        raise HarnessError(
            f"Airflow not healthy after {self.startup_timeout:.0f} s (last health: {health})\n"
            + self.log_tails()
        )

    # -- diagnostics ------------------------------------------------------------------------------

    def check_processes(self) -> None:
        """Raise with its log tail if a component exited."""
        for name, process in self.processes.items():
            code = process.poll()
            if code is not None:
                raise HarnessError(f"the Airflow {name} exited with code {code}\n" + self.log_tail(name))

    def log_tail(self, component: str, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of a component's log, under a header naming the file."""
        path = self.log_path(component)
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return f"--- {path}: no log ---"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {path} ---\n{tail}"

    def log_tails(self, components: tuple[str, ...] = COMPONENTS, lines: int = 20) -> str:
        return "\n".join(self.log_tail(component, lines) for component in components)

    def _log_size(self, component: str) -> int:
        try:
            return self.log_path(component).stat().st_size
        except OSError:
            return 0

    def _log_since(self, component: str, offset: int) -> list[str]:
        """A component's log lines written after byte ``offset``."""
        try:
            with open(self.log_path(component), "rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace").splitlines()
        except OSError:
            return []

    # -- REST -------------------------------------------------------------------------------------

    def token(self) -> str:
        """A JWT from ``POST /auth/token`` (with every user an admin, any credentials do)."""
        if self._token is None:
            answer = self._request(
                "POST", "/auth/token", {"username": "admin", "password": "admin"}, auth=False
            )
            self._token = answer["access_token"]
        return self._token

    def api(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        """One REST call (``/api/v2/...``) with the token; JSON in and out."""
        if query:
            path = f"{path}?{urllib.parse.urlencode(query, doseq=True)}"
        try:
            return self._request(method, path, body)
        except HarnessError as error:
            if "HTTP 401" not in str(error):
                raise
            self._token = None  # expired: one new token, one more try
            return self._request(method, path, body)

    def _request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.api_url}{path}", data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:2000]
            raise HarnessError(f"{method} {path}: HTTP {error.code}: {detail}") from None
        return json.loads(payload) if payload else None

    # -- the DAG ----------------------------------------------------------------------------------

    def import_errors(self) -> list[dict[str, Any]]:
        return self.api("GET", "/api/v2/importErrors", limit=100).get("import_errors", [])

    def wait_for_dag(
        self, dag_id: str = DAG_ID, timeout: float = 120.0, unpause: bool = True
    ) -> dict[str, Any]:
        """Wait until the DAG is parsed (raise with the import errors if it cannot be), then unpause it."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_processes()
            errors = self.import_errors()
            if errors:
                shown = "\n".join(f"{e.get('filename')}:\n{e.get('stack_trace')}" for e in errors)
                raise HarnessError(f"the DAG processor reported import errors:\n{shown}")
            with contextlib.suppress(HarnessError):
                dag = self.api("GET", f"/api/v2/dags/{dag_id}")
                break
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"DAG {dag_id} not parsed after {timeout:.0f} s\n" + self.log_tail("dag-processor")
                )
            time.sleep(1)
        if unpause and dag.get("is_paused"):
            dag = self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        return dag

    def trigger(
        self,
        logical_date: str | date | datetime | None,
        conf: Mapping[str, Any] | None = None,
        *,
        dag_id: str = DAG_ID,
        run_id: str | None = None,
    ) -> str:
        """Trigger a run (``POST .../dagRuns``); returns its run id.

        :param logical_date: a day (``"2026-11-23"``: its midnight, UTC), an aware datetime, or
            ``None`` (a run without a logical date: its run date is the day it runs)
        :param conf: the run's params, e.g. ``{"force": True}`` or ``{"roles": ["tasks"]}``
        """
        body: dict[str, Any] = {"logical_date": _iso(logical_date), "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        return self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"]

    def dag_runs(self, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        """Every run of the DAG (oldest logical date first)."""
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns", limit=100, order_by="run_after")["dag_runs"]

    def task_instances(self, run_id: str, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances"
        return self.api("GET", path, limit=200)["task_instances"]

    def xcom(self, run_id: str, task_id: str, key: str = "return_value", dag_id: str = DAG_ID) -> Any:
        """A task's XCom value (``None`` when it pushed none, e.g. a skipped role's report)."""
        run = urllib.parse.quote(run_id, safe="")
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/xcomEntries/{key}"
        try:
            return self.api("GET", path, deserialize=True)["value"]
        except HarnessError as error:
            if "HTTP 404" in str(error):
                return None
            raise

    def wait_for_run(
        self,
        run_id: str,
        timeout: float = 300.0,
        dag_id: str = DAG_ID,
        poll: float = 1.0,
        stall_after: float | None = STALL_AFTER,
    ) -> RunResult:
        """Poll until the run succeeded or failed; record the states its tasks went through.

        :param stall_after: seconds after which a run still queued, or with no task started,
            ends the wait with :class:`HarnessError` naming why (``None``: wait the whole timeout)
        """
        seen: dict[str, list[str]] = {}
        classpaths: dict[str, set[str]] = {}
        picked: set[str] = set()
        began = time.monotonic()
        deadline = began + timeout
        log_offset = self._log_size("scheduler")
        quoted = urllib.parse.quote(run_id, safe="")
        while True:
            self.check_processes()
            run = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}")
            tis = self.task_instances(run_id, dag_id)
            for ti in tis:
                states = seen.setdefault(ti["task_id"], [])
                if ti.get("state") and (not states or states[-1] != ti["state"]):
                    states.append(ti["state"])
                trigger = ti.get("trigger")
                if trigger:
                    classpaths.setdefault(ti["task_id"], set()).add(trigger["classpath"])
                    if trigger.get("triggerer_id") is not None:
                        picked.add(ti["task_id"])
            if run["state"] in TERMINAL_RUN_STATES:
                return run_status.run_result(run, tis, seen, classpaths, picked)
            now = time.monotonic()
            stalled = (
                stall_after is not None and now - began > stall_after and not run_status.progressing(run, tis)
            )
            if stalled or now > deadline:
                waited = now - began
                states = ", ".join(f"{ti['task_id']}={ti.get('state')}" for ti in tis)
                reasons = self._why_stuck(run, dag_id, log_offset)
                raise HarnessError(
                    f"run {run_id} still {run['state']} after {waited:.0f} s"
                    + (" with no task started" if stalled else "")
                    + ": "
                    + ("; ".join(reasons) if reasons else "no reason found in the scheduler's log")
                    + f"\ntasks: {states}\n"
                    + self.log_tails(("scheduler", "triggerer"))
                )
            time.sleep(poll)

    def _why_stuck(self, run: dict[str, Any], dag_id: str, log_offset: int) -> list[str]:
        """:func:`run_status.why_stuck` with what the API and the scheduler's log say now."""
        try:
            dag = self.api("GET", f"/api/v2/dags/{dag_id}")
            others = [r for r in self.dag_runs(dag_id) if r["dag_run_id"] != run["dag_run_id"]]
        except HarnessError:
            dag, others = None, []
        return run_status.why_stuck(
            run,
            now=datetime.now(UTC),
            dag=dag,
            other_runs=others,
            scheduler_lines=self._log_since("scheduler", log_offset),
        )

    def run_result(self, run_id: str, dag_id: str = DAG_ID) -> RunResult:
        """A run's current result, without waiting (and without the polled states)."""
        run = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")
        return run_status.run_result(run, self.task_instances(run_id, dag_id))

    # -- backfills --------------------------------------------------------------------------------

    def backfill(
        self,
        from_date: str | date | datetime,
        to_date: str | date | datetime,
        conf: Mapping[str, Any] | None = None,
        *,
        dag_id: str = DAG_ID,
        max_active_runs: int = 1,
    ) -> int:
        """Create a backfill (``POST /api/v2/backfills``) of the days from ``from_date`` to ``to_date``.

        ``max_active_runs`` is the backfill's own: Airflow does not apply the DAG's
        ``max_active_runs=1`` to backfill runs (its default is 10), and two dates at once on the
        same machines would make their agents refuse each other. Keep it 1.
        """
        body = {
            "dag_id": dag_id,
            "from_date": _iso(from_date),
            "to_date": _iso(to_date),
            "max_active_runs": max_active_runs,
            "dag_run_conf": dict(conf or {}),
        }
        for attempt in range(5):
            try:
                return self.api("POST", "/api/v2/backfills", body)["id"]
            except HarnessError as error:
                # SQLite: the API answers 503 when the scheduler holds the lock; it is short.
                if "HTTP 503" not in str(error) or attempt == 4:
                    raise
                time.sleep(1)
        raise AssertionError("unreachable")

    def backfill_runs(self, backfill_id: int, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        """The runs of a backfill, oldest logical date first.

        The REST API's runs do not name their backfill: they are the ``backfill`` runs whose
        logical dates lie in the backfill's range.
        """
        backfill = self.api("GET", f"/api/v2/backfills/{backfill_id}")
        first, last = parse(backfill["from_date"]), parse(backfill["to_date"])
        runs = [
            run
            for run in self.dag_runs(dag_id)
            if run.get("run_type") == "backfill"
            and run.get("logical_date")
            and first <= parse(run["logical_date"]) <= last
        ]
        return sorted(runs, key=lambda run: run["logical_date"])

    def wait_for_backfill(
        self, backfill_id: int, timeout: float = 600.0, dag_id: str = DAG_ID
    ) -> list[RunResult]:
        """Wait until the backfill completed; the results of its runs, oldest logical date first."""
        deadline = time.monotonic() + timeout
        results: dict[str, RunResult] = {}
        while True:
            self.check_processes()
            runs = self.backfill_runs(backfill_id, dag_id)
            for run in runs:
                run_id = run["dag_run_id"]
                if run_id in results:
                    continue
                if run["state"] == "running":  # follow it closely: its tasks' states are recorded
                    results[run_id] = self.wait_for_run(run_id, max(1.0, deadline - time.monotonic()), dag_id)
                elif run["state"] in TERMINAL_RUN_STATES:
                    results[run_id] = self.run_result(run_id, dag_id)
            backfill = self.api("GET", f"/api/v2/backfills/{backfill_id}")
            if backfill.get("completed_at") and all(run["dag_run_id"] in results for run in runs):
                return sorted(results.values(), key=lambda result: result.logical_date or _EPOCH)
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"backfill {backfill_id} not complete after {timeout:.0f} s; runs: "
                    + ", ".join(f"{run['dag_run_id']}={run['state']}" for run in runs)
                    + "\n"
                    + self.log_tails(("scheduler", "triggerer"))
                )
            time.sleep(1)

    # -- task logs --------------------------------------------------------------------------------

    def trigger_logs(self, run_id: str, task_id: str, dag_id: str = DAG_ID) -> list[Path]:
        """The triggerer's log files of a task (``attempt=N.log.trigger.<job>.log``): one per deferral run."""
        directory = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return sorted(directory.glob("attempt=*.log.trigger.*.log")) if directory.is_dir() else []


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _iso(moment: str | date | datetime | None) -> str | None:
    """A day (its midnight, UTC) or an aware datetime as ISO-8601 with an offset."""
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment) if "T" in moment else date.fromisoformat(moment)
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    if moment.tzinfo is None:
        raise ValueError(f"a naive datetime is ambiguous, give a timezone: {moment!r}")
    return moment.isoformat()
