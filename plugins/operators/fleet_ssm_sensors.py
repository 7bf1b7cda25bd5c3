"""Sensors that wait on AWS Systems Manager for a list of EC2 instances."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.ssm import SsmHook
from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowSensorTimeout, PokeReturnValue, conf

from operators.fleet_aws import (
    describe_instances,
    make_ec2_hook,
    normalize_instance_ids,
    with_default_retries,
)
from operators.fleet_done_checks import skip_if_done
from operators.fleet_ssm_triggers import FleetSsmAgentOnlineTrigger
from operators.fleet_wait import defer_timeout, raise_for_event

if TYPE_CHECKING:
    from airflow.sdk import Context


class FleetSsmAgentOnlineSensor(AwsBaseSensor[SsmHook]):
    """Wait until the SSM agent of every instance of a list pings ``Online``.

    Each poke is one DescribeInstanceInformation per 50 instances and logs which instances are
    not online yet, with their ping status (``ConnectionLost``, ``Inactive``) or "not registered".
    Poking and the deferred wait share :class:`FleetSsmAgentOnlineTrigger`'s poll, and both are
    bounded by ``waiter_delay`` x ``waiter_max_attempts`` unless ``timeout`` says otherwise.

    Returns, per instance, ``{ping_status, agent_version, platform_name}``.

    :param instance_ids: the instances whose agents must be online (templated)
    :param waiter_delay: seconds between two polls; the default ``poke_interval`` (default: 15)
    :param waiter_max_attempts: polls before the wait fails (default: 40); the default ``timeout``
        is ``waiter_delay * waiter_max_attempts``
    :param deferrable: wait in the triggerer rather than in a worker slot
    :param skip_when_done_for: a run date (templated): when an instance's agent already completed
        it, skip at once instead of waiting (one DescribeInstances; a cleared step of a day
        already done, see :mod:`operators.fleet_done_checks`)
    :param aws_conn_id: The Airflow connection used for AWS credentials.
        If this is ``None`` or empty then the default boto3 behaviour is used.
    :param region_name: AWS region_name. If not specified then the default boto3 behaviour is used.
    :param verify: Whether or not to verify SSL certificates. See:
        https://boto3.amazonaws.com/v1/documentation/api/latest/reference/core/session.html
    :param botocore_config: Configuration dictionary (key-values) for botocore client; bounded
        ``standard`` retries are added unless it sets ``retries``. See:
        https://botocore.amazonaws.com/v1/documentation/api/latest/reference/config.html
    """

    aws_hook_class = SsmHook
    template_fields: Sequence[str] = aws_template_fields("instance_ids", "skip_when_done_for")

    def __init__(
        self,
        *,
        instance_ids: Sequence[str] | str,
        waiter_delay: int = 15,
        waiter_max_attempts: int = 40,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        skip_when_done_for: str | None = None,
        **kwargs: Any,
    ) -> None:
        # BaseSensorOperator's own default timeout is a week: bound poking like the trigger.
        kwargs.setdefault("poke_interval", waiter_delay)
        kwargs.setdefault("timeout", waiter_delay * waiter_max_attempts)
        super().__init__(**kwargs)
        self.instance_ids = instance_ids
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts
        self.deferrable = deferrable
        self.skip_when_done_for = skip_when_done_for

    @property
    def _hook_parameters(self) -> dict[str, Any]:
        # The fleet's bounded standard-mode retries, as make_ssm_hook gives every other fleet hook.
        return {
            **super()._hook_parameters,
            "config": with_default_retries(self.botocore_config, self.aws_conn_id),
        }

    @cached_property
    def waiter(self) -> FleetSsmAgentOnlineTrigger:
        """The trigger whose poll both poke() and the triggerer run; built after templating."""
        trigger = FleetSsmAgentOnlineTrigger(
            instance_ids=normalize_instance_ids(self.instance_ids),
            waiter_delay=self.waiter_delay,
            waiter_max_attempts=self.waiter_max_attempts,
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            botocore_config=self.botocore_config,
        )
        # Poke with this task's own client rather than a second one.
        trigger.hook = self.hook
        return trigger

    def poke(self, context: Context) -> bool | PokeReturnValue:
        event = self.waiter.poll_once()
        if event is None:
            return False
        event = raise_for_event(event, "SSM agent online wait")
        return PokeReturnValue(is_done=True, xcom_value=event.get("instances"))

    def execute(self, context: Context) -> Any:
        if self.skip_when_done_for:
            ec2 = make_ec2_hook(self.aws_conn_id, self.region_name, self.verify, self.botocore_config)
            views = describe_instances(ec2.conn, normalize_instance_ids(self.instance_ids))
            skip_if_done(context, views, self.skip_when_done_for, "wait for")
        if not self.deferrable:
            try:
                return super().execute(context)
            except AirflowSensorTimeout as error:
                # The base class's message says only how long it waited; say which agents are missing.
                raise AirflowSensorTimeout(
                    f"{error} SSM agent not online on: {self.waiter.describe_not_online()}"
                ) from error
        # One look first: agents already online need no round trip through the triggerer.
        event = self.waiter.poll_once()
        if event is not None:
            return self.execute_complete(context, event)
        self.defer(
            trigger=self.waiter,
            method_name="execute_complete",
            timeout=defer_timeout(self.waiter_delay, self.waiter_max_attempts),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        event = raise_for_event(event, "SSM agent online wait")
        self.log.info("%s", event.get("message"))
        return event.get("instances")
