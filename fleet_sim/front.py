"""The one HTTP endpoint: injected faults first, then the SSM and EC2 emulation, else moto.

A request is ``(service, operation, protocol)``: the operation from ``X-Amz-Target`` (JSON
protocol) or the form field ``Action`` (query protocols), the service from the SigV4 scope.
``/_fleet_sim/...`` is the simulator's own (IMDS, control endpoints); no S3 bucket starts with ``_``.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from werkzeug.test import run_wsgi_app
from werkzeug.wrappers import Request, Response

from fleet_sim.aws_errors import PROTOCOL_EC2, PROTOCOL_JSON, PROTOCOL_QUERY, AwsError
from fleet_sim.ec2 import instance_ids
from fleet_sim.fleet import IMDS_PREFIX
from fleet_sim.groups import CODE_SERVER_PREFIX, code_server_health
from fleet_sim.ssm import OPERATIONS as SSM_OPERATIONS

if TYPE_CHECKING:
    from fleet_sim.simulator import FleetSimulator

log = logging.getLogger("fleet_sim")

CONTROL_PREFIX = "/_fleet_sim/"
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")
# X-Amz-Target prefixes of JSON protocol services, when the credential scope is missing.
_TARGET_SERVICES = {"AmazonSSM": "ssm"}


@dataclass(frozen=True)
class ApiCall:
    service: str
    operation: str | None
    protocol: str
    params: Any  # JSON body (dict) or form fields (dict of lists)


def identify(request: Request, body: bytes) -> ApiCall:
    scope = _SCOPE.search(request.headers.get("Authorization", ""))
    service = scope.group("service") if scope else ""
    target = request.headers.get("X-Amz-Target", "")
    if target and "." in target:
        prefix, operation = target.rsplit(".", 1)
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            params = {}
        return ApiCall(
            service or _TARGET_SERVICES.get(prefix, prefix.lower()), operation, PROTOCOL_JSON, params
        )
    content_type = request.headers.get("Content-Type", "")
    if request.method == "POST" and content_type.startswith("application/x-www-form-urlencoded"):
        params = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        action = (params.get("Action") or [None])[0]
        return ApiCall(service, action, PROTOCOL_EC2 if service == "ec2" else PROTOCOL_QUERY, params)
    return ApiCall(service, None, "rest", None)


def request_params(call: ApiCall) -> dict[str, Any] | None:
    """The call's API parameters: a JSON body as it is, a query request's fields as ``{name: value}``."""
    if call.protocol == PROTOCOL_JSON:
        return call.params
    if call.params is None:
        return None
    return {name: values[0] for name, values in call.params.items() if name not in ("Action", "Version")}


class Front:
    """The WSGI application behind the simulator's endpoint."""

    def __init__(self, sim: FleetSimulator, moto_app: Any):
        self.sim = sim
        self.fleet = sim.fleet
        self.moto_app = moto_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path.startswith(CONTROL_PREFIX):
            response = self._control(request)
        else:
            response = self._api(request, environ)
        return response(environ, start_response)

    # -- AWS --------------------------------------------------------------------------------------

    def _api(self, request: Request, environ: dict[str, Any]) -> Response:
        body = request.get_data(cache=True)
        call = identify(request, body)
        response = self._answer(call, environ, body)
        if call.service:
            ids = instance_ids(call.params) if call.service == "ec2" and call.params else []
            self.fleet.api_calls.record(
                call.service,
                call.operation,
                status=response.status_code,
                user_agent=request.headers.get("User-Agent", ""),
                instances=len(ids) or None,
                params=request_params(call),
            )
            self._hold_reply(call)
        return response

    def _hold_reply(self, call: ApiCall) -> None:
        with self.fleet.lock:
            fault = (
                self.fleet.faults.on_call("slow_reply", call.service, call.operation)
                if call.operation
                else None
            )
            if fault is not None:
                self.fleet.record(
                    "fault", None, fault="slow_reply", fault_id=fault.id, operation=call.operation
                )
        if fault is not None:
            time.sleep(fault.spec.seconds)  # out of the lock: the rest of the world goes on

    def _answer(self, call: ApiCall, environ: dict[str, Any], body: bytes) -> Response:
        try:
            with self.fleet.lock:
                self._check_faults(call)
                if call.service == "ssm" and call.operation in SSM_OPERATIONS:
                    result = self.sim.ssm.handle(call.operation, call.params)
                    return Response(json.dumps(result), 200, {"Content-Type": "application/x-amz-json-1.1"})
                if (
                    call.service == "ec2"
                    and call.operation
                    and self.sim.lifecycle.handles(call.operation, call.params)
                ):
                    return _response(*self.sim.lifecycle.respond(call.operation, call.params))
                response = self._forward(environ, body)
                if call.service in ("ec2", "autoscaling"):
                    # RunInstances, TerminateInstances, a group's launches, ... made by moto
                    self.sim.lifecycle.sync()
                return response
        except AwsError as error:
            return _response(*error.render(call.protocol))
        except Exception as error:  # a simulator bug: say so in the caller's format, and log it
            log.exception("the simulator failed on %s %s", call.service, call.operation)
            return _response(
                *AwsError("InternalError", f"fleet simulator: {error!r}", 500).render(call.protocol)
            )

    def _check_faults(self, call: ApiCall) -> None:
        if call.operation is None:
            return
        targets = []
        if call.service == "ec2" and call.operation == "StartInstances":
            for instance_id in instance_ids(call.params):
                host = self.fleet.hosts.get(instance_id)
                if host is None:
                    continue
                instance = self.fleet.moto_instance(instance_id)
                zone = instance.placement.zone or f"{self.fleet.region}a"
                targets.append((instance_id, host.role, instance.instance_type, zone))
        refused = self.fleet.faults.api_error(call.service, call.operation, targets)
        if refused is None:
            return
        fault, error = refused
        # A capacity fault names its instance; a throttle concerns the caller, not an instance.
        host = next((self.fleet.hosts[t[0]] for t in targets if fault.applies_to(t[0], t[1])), None)
        self.fleet.record(
            "fault", host, fault=fault.spec.kind, fault_id=fault.id, operation=call.operation, code=error.code
        )
        raise error

    def _forward(self, environ: dict[str, Any], body: bytes) -> Response:
        forwarded = dict(environ)
        forwarded["wsgi.input"] = io.BytesIO(body)
        forwarded["CONTENT_LENGTH"] = str(len(body))
        app_iter, status, headers = run_wsgi_app(self.moto_app, forwarded, buffered=True)  # closed: a list
        return Response(b"".join(app_iter), status, headers)

    # -- the simulator's own endpoints ------------------------------------------------------------

    def _control(self, request: Request) -> Response:
        path = request.path
        if path.startswith(CODE_SERVER_PREFIX + "/"):
            instance_id = path[len(CODE_SERVER_PREFIX) + 1 :].split("/")[0]
            return Response(b"", code_server_health(self.fleet, instance_id))
        if path.startswith(IMDS_PREFIX + "/"):
            instance_id, _, subpath = path[len(IMDS_PREFIX) + 1 :].partition("/")
            return _response(
                *self.sim.imds.handle(instance_id, request.method, "/" + subpath, request.headers)
            )
        name, method, args = path[len(CONTROL_PREFIX) :].strip("/"), request.method, request.args
        try:
            if method == "GET" and name == "health":
                return _json({"ok": True, "endpoint_url": self.fleet.endpoint_url})
            if method == "GET" and name == "instances":
                return _json(self.sim.describe())
            if method == "GET" and name == "timeline":
                return _json({"events": self.sim.timeline(args.get("instance_id"))})
            if method == "GET" and name == "api_calls":
                return _json({"calls": self.sim.api_calls(since=args.get("since", type=float))})
            if method == "GET" and name == "faults":
                return _json({"faults": self.sim.faults()})
            if method == "POST" and name == "faults":
                return _json({"fault": self.sim.inject(json.loads(request.get_data() or b"{}"))}, 201)
            if method == "DELETE" and name.startswith("faults/"):
                self.sim.remove_fault(int(name.split("/", 1)[1]))
                return _json({}, 200)
        except ValueError as error:  # a ScenarioError too
            return _json({"error": str(error)}, 400)
        return _json({"error": f"no such endpoint: {request.method} {path}"}, 404)


def _response(status: int, headers: dict[str, str], payload: bytes) -> Response:
    return Response(payload, status, headers)


def _json(document: Any, status: int = 200) -> Response:
    return Response(json.dumps(document, indent=2), status, {"Content-Type": "application/json"})
