"""Airflow 3's four components (DAG processor, scheduler, triggerer, API server) as subprocesses.

Each runs as ``python -m airflow <component>`` in a session of its own, with an isolated
``AIRFLOW_HOME`` (SQLite, ``LocalExecutor``, ``SimpleAuthManager`` with everyone an admin) and its
output in ``<home>/<component>.log``. Every wait is bounded; a failure raises
:class:`HarnessError` with the log tail that explains it.

**Scheduled runs are off** (``[scheduler] use_job_schedule = False``). Airflow runs nothing of a
paused DAG, so the harness unpauses ``fleet_daily``, and an unpaused DAG would at once get the
run of the latest midnight (``CronTriggerTimetable`` schedules the most recent past time). With
the cron off, the only runs are the caller's, while the DAG keeps the cron timetable backfills
need (a DAG with ``schedule=None`` cannot be backfilled).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import httpx

REPO = Path(__file__).resolve().parent.parent
COMPONENTS = ("dag-processor", "scheduler", "triggerer", "api-server")
# The scheduler first: it stops handing out tasks; the API server last: tasks call it.
STOP_ORDER = ("scheduler", "triggerer", "dag-processor", "api-server")
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
LOG_TAIL_LINES = 40


class HarnessError(RuntimeError):
    """Airflow did not do what was asked in time; the message carries the relevant log tails."""


class AirflowComponents:
    """Airflow 3's four components against one fleet config and one AWS connection.

    :param home: the ``AIRFLOW_HOME`` (created; the SQLite database, ``<component>.log``, ``logs/``)
    :param fleet_config: the fleet config the DAG reads (``FLEET_CONFIG``)
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
    ):
        self.home = Path(home).resolve()
        self.fleet_config = Path(fleet_config).resolve()
        self.aws_connection = aws_connection
        self.port = port or _free_port()
        self.extra_env = dict(extra_env or {})
        self.startup_timeout = startup_timeout
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._token: str | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_path(self, component: str) -> Path:
        return self.home / f"{component}.log"

    def environment(self) -> dict[str, str]:
        """The environment of every component: this process's, without its Airflow or AWS settings."""
        inherited = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW", "AWS_", "FLEET_")) and key not in ("PYTHONPATH", "_AIRFLOW")
        }
        return {
            **inherited,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), inherited.get("PATH", "")]),
            "PYTHONPATH": str(REPO),  # the operators import instance_agent.protocol
            "AIRFLOW_HOME": str(self.home),
            "FLEET_CONFIG": str(self.fleet_config),
            "AIRFLOW_CONN_AWS_DEFAULT": self.aws_connection,
            # Nothing may reach real AWS: no instance-metadata credentials either.
            "AWS_EC2_METADATA_DISABLED": "true",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
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
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            **self.extra_env,
        }

    def start(self) -> Self:
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
        order = [name for name in STOP_ORDER if name in self.processes]
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _migrate(self, env: dict[str, str]) -> None:
        with open(self.log_path("db-migrate"), "wb") as log:
            try:
                subprocess.run(
                    [sys.executable, "-m", "airflow", "db", "migrate"],
                    env=env,
                    cwd=self.home,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=self.startup_timeout,
                    check=True,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
                raise HarnessError(f"`airflow db migrate`: {error}\n" + self.log_tail("db-migrate")) from None

    def _spawn(self, component: str, env: dict[str, str]) -> None:
        with open(self.log_path(component), "ab") as log:  # the process keeps its own copy open
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
            with contextlib.suppress(httpx.TransportError, HarnessError):
                health = self._request("GET", "/api/v2/monitor/health", auth=False)
                parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
                if all((health.get(part) or {}).get("status") == "healthy" for part in parts):
                    return
            time.sleep(1)
        raise HarnessError(
            f"Airflow not healthy after {self.startup_timeout:.0f} s (last health: {health})\n"
            + self.log_tails()
        )

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
        path = self.log_path(component)
        return path.stat().st_size if path.exists() else 0

    def _log_since(self, component: str, offset: int) -> list[str]:
        """A component's log lines written after byte ``offset``."""
        try:
            with open(self.log_path(component), "rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace").splitlines()
        except OSError:
            return []

    def token(self) -> str:
        """A JWT from ``POST /auth/token`` (with every user an admin, any credentials do)."""
        if self._token is None:
            credentials = {"username": "admin", "password": "admin"}
            self._token = self._request("POST", "/auth/token", credentials, auth=False)["access_token"]
        return self._token

    def api(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        """One REST call (``/api/v2/...``) with the token; JSON in and out."""
        try:
            return self._request(method, path, body, query)
        except HarnessError as error:
            if "HTTP 401" not in str(error):
                raise
            self._token = None  # expired: one new token, one more try
            return self._request(method, path, body, query)

    def _request(self, method: str, path: str, body: Any = None, query: Any = None, auth: bool = True) -> Any:
        headers = {"Authorization": f"Bearer {self.token()}"} if auth else {}
        url = f"{self.api_url}{path}"
        response = httpx.request(method, url, json=body, params=query, headers=headers, timeout=30)
        if response.is_error:
            raise HarnessError(f"{method} {path}: HTTP {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
