"""The agent ↔ DAG contract, end to end in one process: what the agent writes, the DAG reads.

The agent runs on the VM and the DAG in Airflow; they share nothing but
:mod:`instance_agent.protocol`. Here the agent's own writers (a real supervisor with its real
:class:`~instance_agent.reporter.Reporter`, against fakes of EC2 and S3) produce the tags and the
S3 objects, and the DAG's own readers take them back: ``InstanceView`` (DescribeInstances'
shape), :class:`~instance_agent.protocol.AgentReport`, the report operator (outcomes and log
keys), the skip and hand-over decisions. A rule changed on one side only fails here.
"""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path

import pytest
from agent_fakes import Harness, job
from botocore.exceptions import ClientError
from fleet_dag.config import AgentConfig, RoleName
from operators.fleet_done_checks import completed
from operators.fleet_ec2 import InstanceView
from operators.fleet_role_operators import FleetRoleReportOperator, agent_hand_over
from pydantic import TypeAdapter, ValidationError

from instance_agent import cli, protocol
from instance_agent.protocol import agent_log_path, job_log_path
from instance_agent.reporter import Reporter
from instance_agent.spec import SpecError, validate_role

RUN_DATE = "2026-11-23"
INSTANCE = "i-0123456789abcdef0"
S3_LOG_PREFIX = "s3://fleet-logs/agent/"


class FakeEc2:
    """What CreateTags/DeleteTags leave on the instance, as DescribeInstances would show it."""

    def __init__(self) -> None:
        self.tags: dict[str, str] = {}

    def create_tags(self, Resources, Tags):
        assert Resources == [INSTANCE]
        self.tags.update({tag["Key"]: tag["Value"] for tag in Tags})

    def delete_tags(self, Resources, Tags):
        for tag in Tags:
            self.tags.pop(tag["Key"], None)

    def described(self, state: str = "stopped") -> dict:
        tags = [{"Key": key, "Value": value} for key, value in self.tags.items()]
        return {"InstanceId": INSTANCE, "State": {"Name": state}, "Tags": tags}


class FakeS3:
    """The agent's upload_file and the DAG's get_object on one bucket."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.asked: list[str] = []

    def upload_file(self, path, bucket, key, ExtraArgs=None):
        self.objects[bucket, key] = Path(path).read_bytes()

    def get_object(self, Bucket, Key):
        self.asked.append(Key)
        if (Bucket, Key) not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "no such key"}}, "GetObject")
        body = self.objects[Bucket, Key]
        return {"Body": type("Body", (), {"read": lambda self: body})()}


@pytest.fixture
def aws():
    return FakeEc2(), FakeS3()


def run_agent(tmp_path, aws, jobs, **behaviour) -> Harness:
    """A supervised run of ``jobs`` whose reporter writes to the fake EC2 and S3."""
    ec2, s3 = aws
    bucket, key_prefix = protocol.split_s3_prefix(S3_LOG_PREFIX)
    reporter = Reporter(
        instance_id=INSTANCE,
        client_factory=lambda service: {"ec2": ec2, "s3": s3}[service],
        s3_bucket=bucket,
        s3_prefix=protocol.s3_run_prefix(key_prefix, RUN_DATE, "tasks"),
    )
    harness = Harness(tmp_path, jobs, reporter=reporter, **behaviour)
    log_dir = harness.settings.log_dir
    Path(log_dir, RUN_DATE).mkdir(parents=True)
    Path(agent_log_path(log_dir, RUN_DATE)).write_text("the agent's own log\n")
    for name in harness.spec.job_names:
        Path(job_log_path(log_dir, RUN_DATE, name)).write_text(f"{name}: working\n{name}: done\n")
    try:
        harness.run()
    finally:
        reporter.close()
    return harness


def report_operator(ec2: FakeEc2, s3: FakeS3, monkeypatch, job_names):
    operator_class = FleetRoleReportOperator
    monkeypatch.setattr(operator_class, "hook", property(lambda self: type("Hook", (), {"conn": s3})()))
    view = InstanceView.from_api(ec2.described())
    return operator_class(
        task_id="report",
        role="tasks",
        instances={INSTANCE: view.to_xcom()},
        run_date=RUN_DATE,
        job_names=job_names,
        s3_log_prefix=S3_LOG_PREFIX,
    )


class TestTagsAndLogs:
    def test_a_succeeded_run_reads_back_complete_and_every_log_is_where_the_report_looks(
        self, tmp_path, aws, monkeypatch
    ):
        ec2, s3 = aws
        run_agent(tmp_path, aws, [job("backoffice"), job("shield")], backoffice={"exits_at": 4})

        view = InstanceView.from_api(ec2.described())
        report = view.report
        assert (report.role, report.run_date, report.state) == ("tasks", RUN_DATE, protocol.STATE_SUCCEEDED)
        assert report.jobs == {"backoffice": 0, "shield": 0}
        assert report.durations == {"backoffice": 4, "shield": 10}
        assert report.progress == "2/2"
        assert report.is_complete_for(RUN_DATE) and not report.is_complete_for("2026-11-24")
        assert list(completed({INSTANCE: view}, RUN_DATE)) == [INSTANCE]

        summary = report_operator(ec2, s3, monkeypatch, ["backoffice", "shield"]).execute({})

        assert {job: entry["outcome"] for job, entry in summary.items()} == {"backoffice": 0, "shield": 0}
        # The report asked for exactly the keys the agent wrote its job logs to.
        assert s3.asked == ["agent/2026-11-23/tasks/backoffice.log", "agent/2026-11-23/tasks/shield.log"]
        assert set(s3.asked) < {key for _, key in s3.objects}
        assert {key for _, key in s3.objects} == {
            *s3.asked,
            "agent/2026-11-23/tasks/_agent.log",
            "agent/2026-11-23/tasks/state.json",
        }
        assert protocol.s3_job_log(S3_LOG_PREFIX, RUN_DATE, "tasks", "shield") == ("fleet-logs", s3.asked[1])

    def test_a_failed_and_a_never_started_job_fail_the_report_naming_them(self, tmp_path, aws, monkeypatch):
        ec2, s3 = aws
        run_agent(
            tmp_path,
            aws,
            [job("backoffice"), job("shield"), job("uniswap2")],
            signals_at=[(5, signal.SIGTERM)],  # uniswap2 is still running: cut short
            backoffice={"exits_at": 2, "code": 3},
            shield={"exits_at": 1},
            uniswap2={"exits_at": None},
        )

        report = InstanceView.from_api(ec2.described()).report
        assert report.state == protocol.STATE_INTERRUPTED
        assert report.jobs == {"backoffice": 3, "shield": 0, "uniswap2": protocol.JOB_INTERRUPTED}
        assert report.notice.startswith("signal-SIGTERM@")
        assert [protocol.outcome_ok(outcome) for outcome in report.jobs.values()] == [False, True, False]

        with pytest.raises(Exception, match="Role tasks failed for 2026-11-23") as failed:
            report_operator(ec2, s3, monkeypatch, ["backoffice", "shield", "uniswap2"]).execute({})
        message = str(failed.value)
        assert f"job backoffice on {INSTANCE} exited with code 3" in message
        assert f"job uniswap2 on {INSTANCE} ended interrupted" in message
        assert "shield" not in message

    def test_a_report_of_another_date_is_no_report_for_this_one(self, tmp_path, aws, monkeypatch):
        ec2, s3 = aws
        run_agent(tmp_path, aws, [job("backoffice")])
        ec2.tags[protocol.TAG_RUN_DATE] = "2026-11-22"  # yesterday's tags, read today

        report = InstanceView.from_api(ec2.described()).report
        assert not report.is_for(RUN_DATE) and protocol.report_for(report, RUN_DATE) is None
        assert not completed({INSTANCE: InstanceView.from_api(ec2.described())}, RUN_DATE)
        with pytest.raises(Exception, match="left a report for 2026-11-22, not one for 2026-11-23"):
            report_operator(ec2, s3, monkeypatch, ["backoffice"]).execute({})

    def test_a_running_agent_is_watched_not_sent_again(self, tmp_path):
        harness = Harness(tmp_path, [job("backoffice")], backoffice={"exits_at": 30})
        harness.run()
        running = harness.reporter.reports[0]  # the first report, once the jobs were started
        view = InstanceView.from_api(
            {
                "InstanceId": INSTANCE,
                "State": {"Name": "running"},
                "Tags": [{"Key": key, "Value": value} for key, value in running.to_tags().items()],
            }
        )

        assert view.report.is_running_for(RUN_DATE)
        assert view.report.jobs == {"backoffice": protocol.JOB_RUNNING}
        now = running.heartbeat + timedelta(seconds=10)
        action, _ = agent_hand_over(view, RUN_DATE, force=False, now=now, heartbeat_grace=300)
        assert action == "watch"


class TestSharedRules:
    @pytest.mark.parametrize(
        "role", ["tasks", "uniswap_v2", "a-b", "x" * 63, "x" * 64, "1tasks", "a.b", "_a", "tasks\n", ""]
    )
    def test_the_dag_and_the_agent_take_the_same_roles(self, role):
        try:
            TypeAdapter(RoleName).validate_python(role)
            dag_takes = True
        except ValidationError:
            dag_takes = False
        try:
            validate_role(role)
            agent_takes = True
        except SpecError:
            agent_takes = False
        assert dag_takes == agent_takes == bool(protocol.ROLE_NAME_PATTERN.fullmatch(role))

    def test_the_dag_config_defaults_are_the_agents(self):
        config = AgentConfig()
        assert (config.state_dir, config.log_dir) == (protocol.DEFAULT_STATE_DIR, protocol.DEFAULT_LOG_DIR)
        assert config.heartbeat.total_seconds() == protocol.DEFAULT_HEARTBEAT_SECONDS
        run = cli.build_parser().parse_args(
            ["run", "--role", "r", "--date", RUN_DATE, "--spec", "-", "--shutdown", "os"]
        )
        assert (run.state_dir, run.log_dir) == (protocol.DEFAULT_STATE_DIR, protocol.DEFAULT_LOG_DIR)
        assert run.imds_poll_seconds == protocol.DEFAULT_IMDS_POLL_SECONDS
