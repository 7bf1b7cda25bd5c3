"""The default notifier of the daily DAG: writes the alert to the log.

The fleet config's ``notifier`` section can name any Airflow notifier instead. This one serves
both as the failure callback (``notify``) and as the deadline alert's (``async_notify``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseNotifier

if TYPE_CHECKING:
    from airflow.sdk import Context


class FleetLogNotifier(BaseNotifier):
    """Log a fleet alert at ERROR level, so it stands out in the scheduler or triggerer log.

    :param message: the alert text (templated)
    """

    template_fields = ("message",)

    def __init__(self, message: str = "Fleet alert for {{ dag.dag_id if dag else 'the fleet' }}", **kwargs):
        super().__init__(**kwargs)
        self.message = message

    def notify(self, context: Context) -> None:
        self.log.error("FLEET ALERT: %s", self.message)

    async def async_notify(self, context: Context) -> None:
        self.notify(context)
