"""The warm pool's HTTP API, served by Airflow's API server under ``/pool`` (a plugin FastAPI app).

Airflow does not authenticate a plugin's app, so every route here does it the way Airflow's core
API does: the caller is the user of the bearer JWT from ``POST /auth/token`` or of the UI's session
cookie (anonymous: 401), and Airflow's auth manager decides what they may do, as permissions on
the pool's reconcile DAG: read it to see the status, edit it to allocate or destroy (else 403).

Routes (OpenAPI at ``/pool/docs``): ``POST /allocations``, ``GET|DELETE /allocations/{project_id}``,
``GET /status``; and the Node service's own, with its JSON, for existing clients: ``GET
/{projectId}`` (allocates), ``POST /destroy``, and ``/status``'s reference keys.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Annotated, Any

from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Response, status
from operators.pool_config import PROJECT_ID_PATTERN, load_pool_config
from operators.pool_reconcile import POOL_DAG_ID, signal_reconcile
from operators.pool_service import Allocation, NoneReady, NotInPool, PoolService, pool_clients
from operators.pool_view import INSTANCE_ID_PATTERN
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 15
MAX_WAIT_SECONDS = 300
_WAIT_STEP = 1.0

ProjectId = Annotated[str, Field(pattern=PROJECT_ID_PATTERN, description="letters, digits, . _ -")]
read_pool = Depends(requires_access_dag("GET", param_dag_id=POOL_DAG_ID))
edit_pool = Depends(requires_access_dag("PUT", param_dag_id=POOL_DAG_ID))

app = FastAPI(
    title="Fleet warm pool",
    description="Ready instances of an Auto Scaling group, handed to projects. Authenticate as for "
    "Airflow's own API (a bearer token from POST /auth/token, or the UI's session).",
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AllocationRequest(_Body):
    project_id: ProjectId


class DestroyRequest(_Body):
    machineId: Annotated[str, Field(pattern=INSTANCE_ID_PATTERN)]


@functools.cache
def service() -> PoolService:
    config = load_pool_config()
    return PoolService(config, *pool_clients(config))


def _allocation(allocation: Allocation) -> dict[str, Any]:
    machine = allocation.machine
    return {
        "project_id": allocation.project_id,
        "instance_id": machine.instance_id,
        "ip": machine.public_ip or machine.private_ip,
        "private_ip": machine.private_ip,
        "public_ip": machine.public_ip,
        "claimed_at": allocation.claimed_at,
    }


def _allocate(project_id: str, wait: int) -> Allocation:
    """Allocate, waiting up to ``wait`` seconds for a ready instance; 503 with Retry-After after."""
    deadline = time.monotonic() + wait
    asked = False
    while True:
        try:
            allocation = service().allocate(project_id)
        except NoneReady as error:
            if not asked:  # one reconcile asked for per request, not one per second of waiting
                signal_reconcile("allocation found none ready")
                asked = True
            if time.monotonic() + _WAIT_STEP > deadline:
                raise HTTPException(
                    status.HTTP_503_SERVICE_UNAVAILABLE,
                    detail=str(error),
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                ) from None
            time.sleep(_WAIT_STEP)
            continue
        if allocation.created:
            signal_reconcile(f"allocated {allocation.machine.instance_id} to {project_id}")
        return allocation


WaitSeconds = Annotated[int, Query(ge=0, le=MAX_WAIT_SECONDS, description="wait up to N s for a ready one")]


@app.post("/allocations", dependencies=[edit_pool], status_code=201, responses={200: {}, 503: {}})
def allocate(body: AllocationRequest, response: Response, wait: WaitSeconds = 0) -> dict[str, Any]:
    allocation = _allocate(body.project_id, wait)
    if not allocation.created:
        response.status_code = status.HTTP_200_OK
    return _allocation(allocation)


@app.get("/allocations/{project_id}", dependencies=[read_pool])
def get_allocation(project_id: Annotated[str, Path(pattern=PROJECT_ID_PATTERN)]) -> dict[str, Any]:
    allocation = service().held(project_id)
    if allocation is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"project {project_id!r} holds no instance")
    return _allocation(allocation)


@app.delete("/allocations/{project_id}", dependencies=[edit_pool])
def release(project_id: Annotated[str, Path(pattern=PROJECT_ID_PATTERN)]) -> dict[str, Any]:
    try:
        machine = service().release(project_id)
    except NotInPool as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    signal_reconcile(f"released {machine.instance_id} of {project_id}")
    return {"project_id": project_id, "instance_id": machine.instance_id, "terminated": True}


@app.get("/status", dependencies=[read_pool])
def pool_status() -> dict[str, Any]:
    return service().status()


# -- the Node service's routes, for its existing clients --------------------------------------------


@app.post("/destroy", dependencies=[edit_pool])
def destroy(body: DestroyRequest) -> dict[str, Any]:
    try:
        machine = service().destroy_instance(body.machineId)
    except NotInPool as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    signal_reconcile(f"destroyed {machine.instance_id}")
    return {"machineId": machine.instance_id, "terminated": True}


@app.get("/{projectId}", dependencies=[edit_pool])
def allocate_by_get(projectId: Annotated[str, Path(pattern=PROJECT_ID_PATTERN)]) -> dict[str, Any]:
    """The reference's allocation: a GET with a side effect, kept only for its existing clients."""
    allocation = _allocate(projectId, 0)
    return {"ip": allocation.machine.public_ip or allocation.machine.private_ip, "projectId": projectId}


class FleetPoolPlugin(AirflowPlugin):
    name = "fleet_pool"
    fastapi_apps = [{"app": app, "url_prefix": "/pool", "name": "Fleet warm pool"}]
