"""A sensor that waits for the AWS Systems Manager agents of a list of EC2 instances."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.hooks.ssm import SsmHook
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

from operators.fleet_sensors import FleetTriggerSensor
from operators.fleet_ssm_triggers import FleetSsmAgentOnlineTrigger
from operators.fleet_wait import DEFER_TIMEOUT_MARGIN


class FleetSsmAgentOnlineSensor(FleetTriggerSensor):
    """Wait until the SSM agent of every instance of a list pings ``Online``.

    Each poke is one poll of :class:`~operators.fleet_ssm_triggers.FleetSsmAgentOnlineTrigger`
    (one DescribeInstanceInformation per 50 instances), which logs the instances not online yet
    with their ping status (``ConnectionLost``, ``Inactive``) or "not registered"; the deferred
    wait is that trigger (:class:`~operators.fleet_sensors.FleetTriggerSensor`), after one look
    in the worker. Agents that stay offline are waited out until ``timeout``; deferred, the
    trigger's timeout comes first and raises a :class:`~operators.fleet_aws.FleetError`, to which
    the task's retries apply (a reboot often brings an agent back).

    Returns, per instance, ``{ping_status, agent_version, platform_name}``.

    :param poke_interval: seconds between two polls (default: 15)
    :param timeout: seconds before the wait fails (default: 600; a sensor's own default is a week)
    :param instance_ids, skip_when_done_for, deferrable, aws_conn_id, region_name, verify,
        botocore_config: as for :class:`~operators.fleet_sensors.FleetTriggerSensor`
    """

    aws_hook_class = SsmHook
    trigger_class = FleetSsmAgentOnlineTrigger
    template_fields: Sequence[str] = aws_template_fields("instance_ids", "skip_when_done_for")
    defer_margin = DEFER_TIMEOUT_MARGIN
    look_before_deferring = True
    what = "SSM agent online wait"

    def __init__(self, *, poke_interval: float = 15, timeout: float = 600, **kwargs: Any) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)

    def _poke_timeout_detail(self) -> str:
        # The base class's message says only how long it waited; say which agents are missing.
        return f"SSM agent not online on: {self.poke_trigger.describe_not_online()}"
