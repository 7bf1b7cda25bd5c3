"""Fakes of the supervisor's world: a clock, processes and their launcher, the reporter, signals,
and a harness wiring them to a real :class:`Supervisor` and a real state file; IMDS is the real
client on the agent tests' one IMDS (fleet_sim's), with notices due at fake-clock times.

Shared by the supervisor's tests and the launch-failure tests; no real process, no real time.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent_testing import SimImds

from instance_agent.clock import format_time
from instance_agent.imds import ImdsClient
from instance_agent.launcher import LaunchError, ProcessHandle
from instance_agent.spec import spec_from_document
from instance_agent.state import JobRecord, RunState, StateStore
from instance_agent.supervisor import Supervisor, SupervisorSettings

START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def now(self) -> datetime:
        return START + timedelta(seconds=self.seconds)

    def monotonic(self) -> float:
        return self.seconds

    def sleep(self, seconds: float) -> None:
        self.seconds += max(seconds, 0.0)


class FakeProcess(ProcessHandle):
    def __init__(
        self,
        pid: int,
        clock: FakeClock,
        exits_at: float | None,
        code: int,
        obeys_term: bool,
        poll_raises_at: float | None = None,
    ):
        self.pid = pid
        self.clock = clock
        self.exits_at = exits_at
        self.code = code
        self.obeys_term = obeys_term
        # The first poll at or after this time raises: a failure inside the supervisor's loop.
        self.poll_raises_at = poll_raises_at
        self.returncode: int | None = None
        self.signals: list[tuple[float, str]] = []

    def poll(self) -> object:
        if self.poll_raises_at is not None and self.clock.seconds >= self.poll_raises_at:
            self.poll_raises_at = None
            raise RuntimeError("waitpid went wrong")
        if self.returncode is None and self.exits_at is not None and self.clock.seconds >= self.exits_at:
            self.returncode = self.code
        return self.returncode

    def signal(self, signum: int) -> None:
        self.signals.append((self.clock.seconds, signal.Signals(signum).name))
        if signum == signal.SIGKILL or (signum == signal.SIGTERM and self.obeys_term):
            self.returncode = -signum


class FakeLauncher:
    def __init__(self, clock: FakeClock, store: StateStore, **behaviour: dict):
        self.clock = clock
        self.store = store
        self.behaviour = behaviour
        self.processes: dict[str, FakeProcess] = {}
        self.envs: dict[str, dict] = {}
        self.recorded_before_start: dict[str, dict] = {}

    def start(self, job, *, log_path, env, header):
        on_disk = json.loads(Path(self.store.path("2026-11-23")).read_text())
        self.recorded_before_start[job.name] = on_disk["jobs"][job.name]
        settings = {"exits_at": 10.0, "code": 0, "obeys_term": True, **self.behaviour.get(job.name, {})}
        if settings.pop("cannot_start", False):
            raise LaunchError(f"cannot start {job.argv[0]!r}", 127)
        raises = settings.pop("raises", None)
        if raises is not None:  # any exception, not the launcher's own LaunchError
            raise raises
        self.envs[job.name] = env
        process = FakeProcess(4_000_000 + len(self.processes), self.clock, **settings)
        self.processes[job.name] = process
        return process


class FakeReporter:
    s3_bucket = None
    s3_prefix = ""

    def __init__(self) -> None:
        self.reports: list = []
        self.uploads: list = []

    def publish(self, report) -> None:
        self.reports.append(report)

    def flush(self, timeout: float) -> bool:
        return True

    def upload(self, files) -> list:
        self.uploads.extend(files)
        return []


def imds_on_the_clock(
    imds: SimImds, *, spot_at=None, deadline_after=120.0, rebalance_at=None, broken=False
) -> Callable[[FakeClock], ImdsClient]:
    """For ``Harness(imds=...)``: the real ``ImdsClient`` on the (HTTP) ``imds``, on the fake clock.

    A spot stop notice appears at ``spot_at`` s (its deadline ``deadline_after`` s later) and a
    rebalance recommendation at ``rebalance_at`` s of the fake clock; ``broken``: every request fails.
    """
    if broken:
        imds.fault("imds_error")

    def client(clock: FakeClock) -> ImdsClient:
        class OnTheClock(ImdsClient):
            def get(self, path: str) -> str | None:
                if spot_at is not None and clock.seconds >= spot_at:
                    deadline = format_time(START + timedelta(seconds=spot_at + deadline_after))
                    imds.notice(spot_action={"action": "stop", "time": deadline.replace(".000", "")})
                if rebalance_at is not None and clock.seconds >= rebalance_at:
                    imds.notice(rebalance={"noticeTime": "2026-11-23T00:00:01Z"})
                return super().get(path)

        return OnTheClock(imds.url, monotonic=clock.monotonic)

    return client


class FakeSignals:
    def __init__(self, clock: FakeClock, at: tuple = (), broken_after: int | None = None):
        self.clock = clock
        self.at = list(at)
        self.waits = 0
        # take() raises once it was called this many times: a failure between two job starts.
        self.broken_after = broken_after
        self.takes = 0

    def take(self) -> list:
        self.takes += 1
        if self.broken_after is not None and self.takes > self.broken_after:
            self.broken_after = None
            raise OSError("signal pipe went away")
        due = [signum for moment, signum in self.at if moment <= self.clock.seconds]
        self.at = [(moment, signum) for moment, signum in self.at if moment > self.clock.seconds]
        return due

    def wait(self, timeout: float) -> None:
        self.waits += 1
        self.clock.sleep(timeout)


class Harness:
    def __init__(
        self,
        tmp_path,
        jobs,
        *,
        timings=None,
        imds=None,
        signals_at=(),
        signals_broken_after=None,
        reporter=None,
        **behaviour,
    ):
        self.clock = FakeClock()
        self.spec = spec_from_document({"jobs": jobs})
        self.store = StateStore(str(tmp_path))
        self.state = RunState(date="2026-11-23", role="tasks")
        for job in self.spec.jobs:
            self.state.jobs[job.name] = JobRecord()
        self.store.save(self.state)
        self.launcher = FakeLauncher(self.clock, self.store, **behaviour)
        self.reporter = reporter or FakeReporter()
        self.imds = imds(self.clock) if imds else None
        self.settings = SupervisorSettings(
            spec=self.spec,
            role="tasks",
            run_date="2026-11-23",
            log_dir=str(tmp_path / "logs"),
            to_run=self.spec.job_names,
            to_watch=[],
            base_env={"PATH": "/usr/bin"},
            **(timings or {"heartbeat_seconds": 3, "kill_grace_seconds": 2, "imds_poll_seconds": 1}),
        )
        self.supervisor = Supervisor(
            self.settings,
            state=self.state,
            store=self.store,
            launcher=self.launcher,
            clock=self.clock,
            reporter=self.reporter,
            imds=self.imds,
            signals=FakeSignals(self.clock, signals_at, signals_broken_after),
        )

    def run(self):
        return self.supervisor.run()

    def on_disk(self) -> dict:
        return json.loads(Path(self.store.path("2026-11-23")).read_text())

    def signals(self, name: str) -> list:
        return self.launcher.processes[name].signals


def job(name: str, **extra) -> dict:
    return {"name": name, "argv": ["/bin/true"], **extra}
