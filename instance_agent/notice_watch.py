"""``python -m instance_agent watch-notices``: this instance's interruption notice, on its tag.

An instance that runs no jobs (the warm pool's) has no agent run to see a spot interruption or a
rebalance recommendation, yet whoever hands it out must know: the pool never allocates an
instance whose ``fleet:notice`` tag is set, and its reconcile replaces it. This is that one part
of the agent, as a service of its own (``systemd/fleet-notice-watch.service``): poll IMDS, and
write the notice, in the agent's format, when one appears or changes. A spot action outranks a
rebalance recommendation; a notice is never taken off (EC2 does not withdraw them).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from typing import Any

from instance_agent.exit_codes import EXIT_IO_ERROR, EXIT_OK
from instance_agent.imds import ImdsClient
from instance_agent.protocol import TAG_NOTICE, TAG_VALUE_MAX, rebalance_notice, spot_notice
from instance_agent.reporter import boto3_client_factory

log = logging.getLogger("instance_agent")


class NoticeWatch:
    def __init__(self, imds: Any, ec2: Any, instance_id: str) -> None:
        self.imds, self.ec2, self.instance_id = imds, ec2, instance_id
        self.written: str | None = None

    def check(self) -> str | None:
        """One look at IMDS: the notice in force (``None``: none), tagged if it is new."""
        action = self.imds.spot_instance_action()
        if action:
            notice = spot_notice(action)
        else:
            recommendation = self.imds.rebalance_recommendation()
            notice = rebalance_notice(recommendation) if recommendation else None
        if notice and notice != self.written:
            tag = {"Key": TAG_NOTICE, "Value": notice[:TAG_VALUE_MAX]}
            self.ec2.create_tags(Resources=[self.instance_id], Tags=[tag])
            self.written = notice
            log.warning("%s: %s tagged %s", self.instance_id, TAG_NOTICE, notice)
        return notice

    def run(self, poll_seconds: float, stop: threading.Event) -> None:
        """Check every ``poll_seconds`` until ``stop``; a failed check (IMDS, EC2) is tried again
        at the next poll, and logged once until checks succeed again."""
        failing = False
        while not stop.is_set():
            try:
                self.check()
            except Exception as error:  # ImdsError, botocore's: the next poll tries again
                if not failing:
                    log.warning("cannot check for interruption notices: %s", error)
                failing = True
            else:
                if failing:
                    log.info("notice checks work again")
                failing = False
            stop.wait(poll_seconds)


def watch_command(poll_seconds: float, once: bool, env: Any = None) -> int:
    """``watch-notices``: this instance's identity from IMDS, then one check or checks until
    SIGTERM/SIGINT. Exit 0; 4 when IMDS cannot say which instance this is (systemd restarts it)."""
    env = os.environ if env is None else env
    imds = ImdsClient(env=env)
    try:
        instance_id = imds.instance_id()
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or imds.region()
    except Exception as error:  # ImdsError: disabled, unreachable, not on EC2
        log.error("cannot read this instance's identity from IMDS: %s", error)
        return EXIT_IO_ERROR
    watch = NoticeWatch(imds, boto3_client_factory(region)("ec2"), instance_id)
    if once:
        try:
            notice = watch.check()
        except Exception as error:
            log.error("cannot check for interruption notices: %s", error)
            return EXIT_IO_ERROR
        print(json.dumps({"instance_id": instance_id, "notice": notice}))
        return EXIT_OK
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("watching %s for interruption notices every %g s", instance_id, poll_seconds)
    watch.run(poll_seconds, stop)
    return EXIT_OK
