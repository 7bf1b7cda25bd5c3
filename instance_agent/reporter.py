"""What the agent tells AWS: tags on its own instance, job logs in S3, StopInstances on itself.

Nothing here may stop the jobs: every AWS failure is a warning and the run goes on. Tags are
written on a background thread (the latest report wins), so a slow endpoint never delays the
supervisor's reaction to a job's end or an interruption notice.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any, Callable

from instance_agent.protocol import TAG_NOTICE, AgentReport, s3_key

log = logging.getLogger("instance_agent")

# Short timeouts and few retries: a dead endpoint must cost seconds, not minutes.
_BOTOCORE_CONFIG = {
    "connect_timeout": 5,
    "read_timeout": 15,
    "retries": {"max_attempts": 3, "mode": "standard"},
}


def boto3_client_factory(region: str | None) -> Callable[[str], Any]:
    def make(service: str) -> Any:
        import boto3  # imported late: a missing boto3 disables reporting, not the jobs
        from botocore.config import Config

        return boto3.session.Session().client(service, region_name=region, config=Config(**_BOTOCORE_CONFIG))

    return make


class Reporter:
    """Tags, log upload and self-stop for one instance; ``instance_id=None`` turns tags off."""

    def __init__(
        self,
        *,
        instance_id: str | None,
        client_factory: Callable[[str], Any],
        s3_bucket: str | None = None,
        s3_prefix: str = "",  # the run's: protocol.s3_run_prefix
    ):
        self.instance_id = instance_id
        self.s3_bucket = s3_bucket
        self.s3_prefix = s3_prefix
        self._client_factory = client_factory
        self._clients: dict = {}
        self._failing: set = set()
        self._notice_cleared = False
        # The tag writer thread: only the newest report waits for it.
        self._condition = threading.Condition()
        self._pending: AgentReport | None = None
        self._busy = False
        self._closed = False
        threading.Thread(target=self._write_reports, name="fleet-agent-tags", daemon=True).start()
        if instance_id is None:
            log.warning("no instance id (IMDS unavailable): tags are not written, --shutdown ec2 cannot work")

    def publish(self, report: AgentReport) -> None:
        if self.instance_id is not None:
            with self._condition:
                self._pending = report
                self._condition.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every published report is written (or failed); False on timeout."""
        with self._condition:
            return self._condition.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def _write_reports(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._pending is not None or self._closed)
                if self._pending is None:
                    return
                report, self._pending, self._busy = self._pending, None, True
            try:
                self._write_tags(report)
            except Exception:  # _call logs the AWS failures; never let the thread die
                log.exception("unexpected error while writing tags")
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()

    def _write_tags(self, report: AgentReport) -> None:
        tags = report.to_tags()
        ec2 = self._client("ec2")
        if ec2 is None:
            return
        if not self._notice_cleared and TAG_NOTICE not in tags:
            # A notice left by an earlier day's run would describe today wrongly.
            self._call(
                "DeleteTags",
                lambda: ec2.delete_tags(Resources=[self.instance_id], Tags=[{"Key": TAG_NOTICE}]),
            )
        self._notice_cleared = True
        self._call(
            "CreateTags",
            lambda: ec2.create_tags(
                Resources=[self.instance_id],
                Tags=[{"Key": key, "Value": value} for key, value in tags.items()],
            ),
        )

    def upload(self, files: Sequence[tuple[str, str]]) -> list[str]:
        """Upload ``(local path, key under the prefix)`` pairs; returns the keys written."""
        if not self.s3_bucket:
            return []
        s3 = self._client("s3")
        if s3 is None:
            return []
        written = []
        for path, name in files:
            if not os.path.exists(path):
                continue
            key = s3_key(self.s3_prefix, name)
            if self._call(
                f"PutObject s3://{self.s3_bucket}/{key}",
                lambda path=path, key=key: s3.upload_file(
                    path, self.s3_bucket, key, ExtraArgs={"ContentType": "text/plain; charset=utf-8"}
                ),
                kind="PutObject",
            ):
                written.append(key)
        return written

    def stop_instance(self) -> bool:
        if self.instance_id is None:
            log.error("cannot call StopInstances: the instance id is unknown (IMDS unavailable)")
            return False
        ec2 = self._client("ec2")
        return ec2 is not None and self._call(
            f"StopInstances {self.instance_id}", lambda: ec2.stop_instances(InstanceIds=[self.instance_id])
        )

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            try:
                self._clients[service] = self._client_factory(service)
            except Exception as error:  # no boto3, no region, bad endpoint...
                log.warning("cannot create the AWS %s client: %s; continuing without it", service, error)
                self._clients[service] = None
        return self._clients[service]

    def _call(self, what: str, call: Callable[[], Any], kind: str | None = None) -> bool:
        kind = kind or what.split()[0]
        try:
            call()
        except Exception as error:
            # Warn when a call starts failing, not on every heartbeat after that.
            if kind not in self._failing:
                log.warning("AWS %s failed: %s; the jobs go on, the state file stays the truth", what, error)
                self._failing.add(kind)
            else:
                log.debug("AWS %s failed again: %s", what, error)
            return False
        if kind in self._failing:
            log.info("AWS %s works again", kind)
            self._failing.discard(kind)
        return True
