"""Running SSM invocations on their hosts: delivery, the script's process, timeouts, cancelling,
S3 output. Every method but the waiter threads runs under the fleet's lock."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from moto.backends import get_backend

from fleet_sim.fleet import Fleet
from fleet_sim.processes import signal_group
from fleet_sim.ssm_commands import KILLED_BY_SSM, Invocation

STEP_DIR = "awsrunShellScript/0.awsrunShellScript"


class ScriptRunner:
    def __init__(self, fleet: Fleet):
        self.fleet = fleet
        self._waiters: list[threading.Thread] = []

    def schedule(self, invocation: Invocation) -> None:
        """Deliver a new invocation after the scenario's delay, or time it out undelivered."""
        self.fleet.scheduler.call_later(
            self.fleet.scenario.delivery_delay, lambda: self._locked(self.deliver, invocation)
        )
        self.fleet.scheduler.call_later(
            invocation.command.delivery_timeout, lambda: self._locked(self._delivery_timed_out, invocation)
        )

    def _locked(self, method: Callable[[Invocation], None], invocation: Invocation) -> None:
        with self.fleet.lock:
            method(invocation)

    def deliver(self, invocation: Invocation) -> None:
        host = self.fleet.hosts[invocation.instance_id]
        if invocation.status != "Pending" or not host.ssm_online or host.state != "running":
            return  # cancelled, or the host is down: delivered when it is back online
        command = invocation.command
        directory = self.fleet.workdir / "ssm" / command.command_id / invocation.instance_id
        directory.mkdir(parents=True, exist_ok=True)
        script = directory / "_script.sh"
        script.write_text(command.script)
        invocation.directory = directory
        working_directory = (command.parameters.get("workingDirectory") or [""])[0] or str(host.sandbox)
        invocation.started = time.time()
        if not os.path.isdir(working_directory):
            (directory / "stdout").write_text("")
            (directory / "stderr").write_text(
                f"Failed to run commands: directory {working_directory} not found\n"
            )
            self._ended(invocation, "Failed", "Failed", 1)
            return
        with open(directory / "stdout", "wb") as stdout, open(directory / "stderr", "wb") as stderr:
            invocation.popen = subprocess.Popen(
                ["/bin/bash", str(script)],
                cwd=working_directory,
                env=self.fleet.environment(host),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                close_fds=True,
            )
        invocation.status = invocation.details = "InProgress"
        self.fleet.record("command_started", host, command_id=command.command_id, pid=invocation.popen.pid)
        invocation.timeout_handle = self.fleet.scheduler.call_later(
            command.execution_timeout, lambda: self._locked(self._execution_timed_out, invocation)
        )
        waiter = threading.Thread(
            target=self._wait, args=(invocation,), name=f"ssm-{command.command_id[:8]}", daemon=True
        )
        self._waiters.append(waiter)
        waiter.start()
        self.fleet.command_started(host, command.command_id)

    def _wait(self, invocation: Invocation) -> None:
        assert invocation.popen is not None
        code = invocation.popen.wait()
        with self.fleet.lock:
            self.fleet.scheduler.cancel(invocation.timeout_handle)
            if invocation.cancel_requested:
                self._ended(invocation, "Cancelled", "Cancelled", -1)
            elif invocation.timed_out:
                self._ended(invocation, "TimedOut", "ExecutionTimedOut", KILLED_BY_SSM)
            elif code == 0:
                self._ended(invocation, "Success", "Success", 0)
            else:
                self._ended(invocation, "Failed", "Failed", code if code > 0 else 128 - code)

    def _execution_timed_out(self, invocation: Invocation) -> None:
        if invocation.status == "InProgress" and invocation.popen is not None:
            invocation.timed_out = True
            signal_group(invocation.popen.pid, signal.SIGKILL)

    def _delivery_timed_out(self, invocation: Invocation) -> None:
        if invocation.status == "Pending":
            self._ended(invocation, "TimedOut", "DeliveryTimedOut", -1)

    def cancel(self, invocation: Invocation) -> None:
        if invocation.status == "Pending":
            self._ended(invocation, "Cancelled", "Cancelled", -1)
        elif invocation.status == "InProgress" and invocation.popen is not None:
            invocation.cancel_requested = True
            invocation.status = invocation.details = "Cancelling"
            signal_group(invocation.popen.pid, signal.SIGKILL)

    def _ended(self, invocation: Invocation, status: str, details: str, code: int) -> None:
        invocation.status, invocation.details, invocation.response_code = status, details, code
        invocation.ended = time.time()
        self._upload(invocation)
        self.fleet.record(
            "command_ended",
            self.fleet.hosts.get(invocation.instance_id),
            command_id=invocation.command.command_id,
            status=status,
            status_details=details,
            response_code=code,
        )

    def _upload(self, invocation: Invocation) -> None:
        """stdout and stderr to moto's S3 at SSM's key layout; no bucket: no URL, the result stands."""
        command = invocation.command
        bucket, prefix = command.request["OutputS3BucketName"], command.request["OutputS3KeyPrefix"]
        if not bucket or invocation.directory is None:
            return
        s3 = get_backend("s3")[self.fleet.account_id]["aws"]
        for stream in ("stdout", "stderr"):
            path = [prefix.strip("/"), command.command_id, invocation.instance_id, STEP_DIR, stream]
            key = "/".join(filter(None, path))
            try:
                s3.put_object(bucket, key, (invocation.directory / stream).read_bytes())
            except Exception as error:
                self.fleet.record(
                    "output_upload_failed",
                    self.fleet.hosts.get(invocation.instance_id),
                    command_id=command.command_id,
                    error=str(error),
                )
                return
            url = f"https://s3.{self.fleet.region}.amazonaws.com/{bucket}/{key}"
            setattr(invocation, f"{stream}_url", url)

    def close(self, invocations: list[Invocation], timeout: float = 5.0) -> None:
        """Kill every script still running and wait for their waiters."""
        with self.fleet.lock:
            for invocation in invocations:
                if invocation.popen is not None and invocation.popen.poll() is None:
                    signal_group(invocation.popen.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        for waiter in self._waiters:
            waiter.join(max(0.0, deadline - time.monotonic()))
