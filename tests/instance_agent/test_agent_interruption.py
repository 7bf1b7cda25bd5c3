"""A spot interruption notice from fleet_sim's IMDS: the jobs get SIGTERM, the state and the tags
say interrupted, and the IMDS token survives a 401."""

from __future__ import annotations

import sys

from agent_testing import RUN_DATE
from fleet_testing import wait_for

from instance_agent.imds import SPOT_ACTION_PATH, TOKEN_PATH
from instance_agent.protocol import TAG_NOTICE, AgentReport


def test_an_interruption_notice_stops_the_jobs_and_is_recorded(agent, sim, aws, imds, on_ec2):
    marker = agent.work / "got-term"
    script = agent.script(
        "trade.py",
        "import signal, sys, time\n"
        "def bye(*_):\n"
        f"    open({str(marker)!r}, 'w').write('TERM')\n"
        "    time.sleep(1.5)  # winding down takes a while: IMDS is polled meanwhile\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "time.sleep(60)\n",
    )
    spec = agent.spec(
        [{"name": "trade", "argv": [sys.executable, script]}, agent.counting_job("report", sleep=60)],
        kill_grace_seconds=10,
    )
    process = agent.start(spec, shutdown="ec2")
    try:
        agent.wait_job_status("trade", "running")
        agent.wait_job_status("report", "running")
        wait_for(lambda: imds.count(SPOT_ACTION_PATH, 404) >= 2, what="polls answered 404")
        assert agent.job("trade")["status"] == "running"  # 404: nothing pending, nothing done

        # The simulator's spot interruption: the notice now, EC2's stop (long) after the test.
        sim.inject({"kind": "spot_interruption", "instance": on_ec2, "since": "start", "notice_seconds": 600})
        wait_for(marker.exists, what="SIGTERM to the job")
        imds.fault("imds_unauthorized", count=1)  # the token is rejected once while the jobs wind down
        wait_for(lambda: imds.count(TOKEN_PATH, 200) >= 2, what="a new token after the 401")
        process.communicate(timeout=30)
    finally:
        process.kill()

    assert process.returncode == 5
    assert marker.read_text() == "TERM"
    assert imds.count(SPOT_ACTION_PATH, 401) == 1
    assert imds.count(SPOT_ACTION_PATH, 200) >= 2  # polling went on with the new token
    assert imds.count(TOKEN_PATH) == 2
    assert imds.ttls() == ["21600", "21600"]

    state = agent.state()
    assert state["state"] == "interrupted"
    assert "spot interruption notice: stop" in state["agent"]["interrupted_by"]
    assert {name: record["status"] for name, record in state["jobs"].items()} == {
        "trade": "interrupted",
        "report": "interrupted",
    }
    assert state["jobs"]["trade"]["exit_code"] == 0  # it ended gracefully, but it was cut short

    tags = aws.tags(on_ec2)
    report = AgentReport.from_tags(tags)
    assert (report.state, report.run_date, report.progress) == ("interrupted", RUN_DATE, "2/2")
    assert report.jobs == {"trade": "interrupted", "report": "interrupted"}
    assert tags[TAG_NOTICE] == f"spot-stop@{imds.host.spot_action['time']}"
    # AWS stops the instance itself: the agent does not shut down after an interruption.
    assert aws.instance(on_ec2)["State"]["Name"] == "running"
