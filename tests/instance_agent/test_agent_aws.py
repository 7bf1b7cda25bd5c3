"""Against fleet_sim's AWS endpoint: the tags, the uploaded logs and the state file tell the same story,
the instance stops itself, and AWS failures never stop the jobs."""

from __future__ import annotations

import json
import time

from agent_testing import RUN_DATE
from fleet_testing import wait_for

from instance_agent.protocol import TAG_NOTICE, AgentReport


def _local(agent, name: str) -> bytes:
    return (agent.log_dir / RUN_DATE / name).read_bytes()


class TestReportingOnAws:
    def test_tags_logs_and_the_stop_match_the_state_file(self, agent, sim, aws, on_ec2):
        aws.s3.create_bucket(Bucket="fleet-logs")
        aws.ec2.create_tags(Resources=[on_ec2], Tags=[{"Key": TAG_NOTICE, "Value": "rebalance@yesterday"}])
        talker = agent.script("talker.py", "print('orders placed: 3')\n")
        spec = agent.spec(
            [{"name": "backoffice", "argv": ["python3", talker]}, agent.counting_job("shield", exit_code=3)],
            s3_log_prefix="s3://fleet-logs/daily/",
        )

        completed = agent.run(spec, shutdown="ec2")

        assert completed.returncode == 1, agent.agent_log()  # a job failed; the stop itself worked
        state = agent.state()
        assert state["agent"]["instance_id"] == on_ec2
        sim.wait_for_state(on_ec2, "stopped", timeout=5)

        report = AgentReport.from_tags(aws.tags(on_ec2))
        assert (report.role, report.run_date, report.state, report.progress) == (
            "tasks",
            RUN_DATE,
            "failed",
            "2/2",
        )
        assert report.jobs == {name: record["exit_code"] for name, record in state["jobs"].items()}
        assert report.jobs == {"backoffice": 0, "shield": 3}
        assert report.notice is None  # yesterday's notice was cleared

        uploaded = aws.objects("fleet-logs", f"daily/{RUN_DATE}/tasks/")
        prefix = f"daily/{RUN_DATE}/tasks/"
        assert sorted(uploaded) == sorted(
            prefix + name for name in ("backoffice.log", "shield.log", "_agent.log", "state.json")
        )
        assert uploaded[prefix + "backoffice.log"] == _local(agent, "backoffice.log")
        assert b"orders placed: 3" in uploaded[prefix + "backoffice.log"]
        assert uploaded[prefix + "shield.log"] == _local(agent, "shield.log")
        assert json.loads(uploaded[prefix + "state.json"]) == state

    def test_the_heartbeat_moves_while_the_jobs_run(self, agent, aws, on_ec2):
        spec = agent.spec([agent.counting_job("slow", sleep=3)], heartbeat_seconds=0.3)
        process = agent.start(spec)
        try:
            seen = set()

            def two_heartbeats():
                report = AgentReport.from_tags(aws.tags(on_ec2))
                if report and report.state == "running":
                    assert report.progress == "0/1"
                    assert report.jobs == {"slow": "running"}
                    seen.add(report.heartbeat)
                return len(seen) >= 2

            wait_for(two_heartbeats, timeout=5, interval=0.1, what="two distinct heartbeats")
        finally:
            process.communicate(timeout=20)
        assert process.returncode == 0
        final = AgentReport.from_tags(aws.tags(on_ec2))
        assert (final.state, final.progress, final.jobs) == ("succeeded", "1/1", {"slow": 0})
        assert final.durations["slow"] >= 3
        assert aws.instance(on_ec2)["State"]["Name"] == "running"  # --shutdown none

    def test_a_rebalance_recommendation_is_tagged_and_the_jobs_go_on(self, agent, sim, aws, imds, on_ec2):
        sim.inject({"kind": "rebalance", "instance": on_ec2, "since": "start"})
        notice = wait_for(lambda: imds.host.rebalance, what="the rebalance recommendation")
        spec = agent.spec([agent.counting_job("trade", sleep=1)])

        completed = agent.run(spec)

        assert completed.returncode == 0
        assert agent.job("trade")["status"] == "succeeded"
        assert aws.tags(on_ec2)[TAG_NOTICE] == f"rebalance@{notice['noticeTime']}"
        assert "rebalance recommendation" in agent.agent_log()


class TestAwsFailures:
    def test_unreachable_aws_is_a_warning_and_the_jobs_still_run(self, agent, imds):
        agent.use_imds(imds.url)
        agent.env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"  # nothing listens there
        spec = agent.spec([agent.counting_job("trade")], s3_log_prefix="s3://fleet-logs/daily")

        began = time.monotonic()
        completed = agent.run(spec, shutdown="ec2")

        assert completed.returncode == 6  # jobs done, but StopInstances could not be called
        assert time.monotonic() - began < 40
        assert agent.count("trade") == 1
        assert agent.state()["state"] == "succeeded"
        log = agent.agent_log()
        assert log.count("AWS CreateTags failed") == 1
        assert "AWS PutObject" in log
        assert "AWS StopInstances" in log

    def test_without_imds_the_jobs_run_and_tags_are_skipped(self, agent):
        spec = agent.spec([agent.counting_job("trade")])

        completed = agent.run(spec)

        assert completed.returncode == 0
        assert agent.count("trade") == 1
        assert "no instance id" in agent.agent_log()
