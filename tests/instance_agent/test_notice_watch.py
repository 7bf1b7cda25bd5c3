"""``watch-notices`` on fleet_sim's IMDS and EC2: a notice appears on the instance's tag once."""

from __future__ import annotations

import json
import logging
import threading

from fleet_testing import wait_for

from instance_agent.imds import ImdsClient
from instance_agent.notice_watch import NoticeWatch
from instance_agent.protocol import TAG_NOTICE

SPOT = {"action": "terminate", "time": "2026-12-02T10:02:00Z"}
REBALANCE = {"noticeTime": "2026-12-02T10:00:00Z"}


def create_tags_calls(sim) -> int:
    return sum(1 for call in sim.api_calls() if call["operation"] == "CreateTags")


def test_a_notice_is_tagged_once_and_a_spot_action_outranks_a_rebalance(sim, imds, aws):
    watch = NoticeWatch(ImdsClient(imds.url), aws.ec2, imds.instance_id)
    assert watch.check() is None
    assert TAG_NOTICE not in aws.tags(imds.instance_id)

    imds.notice(rebalance=REBALANCE)
    assert watch.check() == "rebalance@2026-12-02T10:00:00Z"
    assert watch.check() == "rebalance@2026-12-02T10:00:00Z"
    assert aws.tags(imds.instance_id)[TAG_NOTICE] == "rebalance@2026-12-02T10:00:00Z"
    assert create_tags_calls(sim) == 1  # the same notice again: no second write

    imds.notice(spot_action=SPOT)
    assert watch.check() == "spot-terminate@2026-12-02T10:02:00Z"
    assert aws.tags(imds.instance_id)[TAG_NOTICE] == "spot-terminate@2026-12-02T10:02:00Z"


def test_the_simulators_spot_interruption_reaches_the_tag(sim, imds, aws):
    sim.inject(
        {"kind": "spot_interruption", "instance": imds.instance_id, "since": "start", "notice_seconds": 600}
    )
    watch = NoticeWatch(ImdsClient(imds.url), aws.ec2, imds.instance_id)
    notice = wait_for(watch.check, what="the notice")
    assert notice.startswith("spot-stop@")
    assert aws.tags(imds.instance_id)[TAG_NOTICE] == notice


def test_the_loop_outlives_a_failing_imds_and_logs_it_once(sim, imds, aws, caplog):
    imds.fault("imds_error", count=3)
    imds.notice(rebalance=REBALANCE)
    watch = NoticeWatch(ImdsClient(imds.url), aws.ec2, imds.instance_id)
    stop = threading.Event()
    loop = threading.Thread(target=watch.run, args=(0.05, stop))
    with caplog.at_level(logging.INFO, logger="instance_agent"):
        loop.start()
        wait_for(lambda: watch.written, what="the notice written after the errors")
        stop.set()
        loop.join(5)
    assert not loop.is_alive()
    messages = [record.getMessage() for record in caplog.records]
    assert sum("cannot check for interruption notices" in m for m in messages) == 1
    assert "notice checks work again" in messages
    assert aws.tags(imds.instance_id)[TAG_NOTICE] == "rebalance@2026-12-02T10:00:00Z"


def test_the_command_once_prints_the_notice(agent, imds, on_ec2):
    imds.notice(spot_action=SPOT)
    answer = agent.cli("watch-notices", "--once")
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout) == {
        "instance_id": on_ec2,
        "notice": "spot-terminate@2026-12-02T10:02:00Z",
    }


def test_the_command_without_imds_exits_4_naming_it(agent):
    agent.use_imds("http://127.0.0.1:9")  # nothing listens there
    answer = agent.cli("watch-notices", "--once")
    assert answer.returncode == 4
    assert "cannot read this instance's identity from IMDS" in answer.stderr


def test_a_bad_poll_interval_is_refused_naming_it(agent):
    answer = agent.cli("watch-notices", "--poll-seconds", "0")
    assert answer.returncode == 2
    assert "--poll-seconds" in answer.stderr and "'0'" in answer.stderr
