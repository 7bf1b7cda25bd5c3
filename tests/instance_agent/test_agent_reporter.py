"""Reporting never stops the jobs: AWS failures are warnings, the latest tags win."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from instance_agent.protocol import TAG_NOTICE, TAG_STATE, AgentReport
from instance_agent.reporter import Reporter

NOW = datetime(2026, 11, 23, 0, 30, tzinfo=UTC)


class FakeEc2:
    def __init__(self, fail: bool = False, gate: threading.Event | None = None):
        self.fail = fail
        self.gate = gate
        self.calls: list = []

    def create_tags(self, **kwargs):
        if self.gate is not None:
            self.gate.wait(5)
        self.calls.append(("create_tags", kwargs))
        if self.fail:
            raise RuntimeError("UnauthorizedOperation: not allowed to ec2:CreateTags")

    def delete_tags(self, **kwargs):
        self.calls.append(("delete_tags", kwargs))

    def stop_instances(self, **kwargs):
        self.calls.append(("stop_instances", kwargs))
        if self.fail:
            raise RuntimeError("could not connect to the endpoint URL")


def _report(state: str = "running", notice: str | None = None) -> AgentReport:
    return AgentReport(
        role="tasks", run_date="2026-11-23", state=state, heartbeat=NOW, progress="0/1", notice=notice
    )


def _tag_writes(ec2: FakeEc2) -> list:
    return [
        {tag["Key"]: tag["Value"] for tag in kwargs["Tags"]}
        for name, kwargs in ec2.calls
        if name == "create_tags"
    ]


class TestReporter:
    def test_tags_go_on_the_own_instance_and_a_stale_notice_is_cleared_once(self):
        ec2 = FakeEc2()
        reporter = Reporter(instance_id="i-0abc", client_factory=lambda service: ec2)

        reporter.publish(_report())
        reporter.flush(5)
        reporter.publish(_report("succeeded"))
        reporter.flush(5)

        assert [name for name, _ in ec2.calls] == ["delete_tags", "create_tags", "create_tags"]
        assert ec2.calls[0][1] == {"Resources": ["i-0abc"], "Tags": [{"Key": TAG_NOTICE}]}
        assert [tags[TAG_STATE] for tags in _tag_writes(ec2)] == ["running", "succeeded"]
        assert all(kwargs["Resources"] == ["i-0abc"] for _, kwargs in ec2.calls)

    def test_the_latest_report_wins_while_a_write_is_slow(self):
        gate = threading.Event()
        ec2 = FakeEc2(gate=gate)
        reporter = Reporter(instance_id="i-0abc", client_factory=lambda service: ec2)

        for state in ("running", "running", "failed"):
            reporter.publish(_report(state))  # returns at once even though AWS is stuck
        gate.set()
        assert reporter.flush(5)

        assert _tag_writes(ec2)[-1][TAG_STATE] == "failed"
        assert len(_tag_writes(ec2)) <= 2

    def test_aws_failures_are_one_warning_not_an_exception(self, caplog):
        ec2 = FakeEc2(fail=True)
        reporter = Reporter(instance_id="i-0abc", client_factory=lambda service: ec2)

        with caplog.at_level("WARNING", logger="instance_agent"):
            for _ in range(3):
                reporter.publish(_report())
                reporter.flush(5)
            stopped = reporter.stop_instance()

        assert stopped is False
        assert caplog.text.count("AWS CreateTags failed") == 1
        assert "AWS StopInstances i-0abc failed" in caplog.text

    def test_without_boto3_or_an_instance_id_nothing_is_called(self, caplog):
        def no_boto3(service):
            raise ImportError("No module named 'boto3'")

        with caplog.at_level("WARNING", logger="instance_agent"):
            without_client = Reporter(instance_id="i-0abc", client_factory=no_boto3)
            without_client.publish(_report())
            without_client.flush(5)
            without_id = Reporter(instance_id=None, client_factory=no_boto3)
            without_id.publish(_report())

        assert without_client.upload([("/etc/hostname", "x.log")]) == []
        assert without_id.stop_instance() is False
        assert "cannot create the AWS ec2 client" in caplog.text
        assert "no instance id" in caplog.text
