"""The reconcile task, and how the API asks for a reconcile now rather than at the next minute.

Both sides read this one module: the DAG's id (the API authorizes on it), and the asset whose
event the API emits after every allocation or destroy, which the DAG is scheduled on besides its
every-minute timetable.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator
from airflow.sdk import Asset

from operators.pool_config import load_pool_config
from operators.pool_service import PoolService, pool_clients

log = logging.getLogger(__name__)

POOL_DAG_ID = "fleet_pool"
POOL_CHANGED = Asset(name="fleet_pool_changed", uri="fleet-pool://claims/changed")


def signal_reconcile(reason: str) -> None:
    """Emit the pool's asset event (from the API server, which has the metadata database): the
    reconcile DAG runs now. A failure is logged, never raised: the next minute's run still comes."""
    try:
        from airflow.assets.manager import asset_manager
        from airflow.models.asset import AssetModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            model = session.scalar(select(AssetModel).where(AssetModel.uri == POOL_CHANGED.uri))
            if model is None:
                log.warning(
                    "No asset %s yet (the pool DAG is not parsed): no reconcile asked for", POOL_CHANGED.uri
                )
                return
            asset_manager.register_asset_change(asset=model, extra={"reason": reason}, session=session)
    except Exception:
        log.exception("Could not ask for a reconcile (%s); the next scheduled one will run", reason)


class FleetPoolReconcileOperator(BaseOperator):
    """Reconcile the warm pool once: scale up to claimed + buffer, scale in and replace by name.

    ``paused`` (templated, e.g. ``{{ params.paused }}``) logs the decisions and carries none out.
    """

    template_fields = ("paused",)
    ui_color = "#d6eaf8"

    def __init__(self, *, config_path: str | None = None, paused: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config_path = config_path
        self.paused = paused

    def execute(self, context: Any) -> dict[str, Any]:
        config = load_pool_config(self.config_path)
        paused = self.paused if isinstance(self.paused, bool) else str(self.paused).lower() == "true"
        plan = PoolService(config, *pool_clients(config)).reconcile(paused=paused)
        return {
            "desired": plan.desired,
            "retired": [r.instance_id for r in plan.retire],
            "paused": paused,
            "decisions": list(plan.lines),
        }
