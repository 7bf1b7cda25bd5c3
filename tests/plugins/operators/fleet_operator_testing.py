"""Test helpers for the operators, sensors and triggers: watch and bend moto's EC2, read task logs.

Operators, sensors and triggers each build their own boto3 client (through the provider's hook),
so :class:`Ec2Api` does not attach to one client: it adds botocore event handlers to
``botocore.handlers.BUILTIN_HANDLERS``, the list every new botocore session registers (moto
hooks in the same way). Every EC2 client created while it is installed then reports to it.

The pytest fixtures built on these helpers (``api``, ``client``, ``stub``, ``task_log``, ``ti``, ...)
are in this folder's ``conftest.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.handlers
from botocore.awsrequest import AWSResponse
from fleet_testing import share_botocore_loader

AMI = "ami-12c6146b"  # moto runs instances from any image ID

THROTTLE_BODY = (
    b"<Response><Errors><Error><Code>RequestLimitExceeded</Code>"
    b"<Message>Request limit exceeded.</Message></Error></Errors><RequestID>x</RequestID></Response>"
)


class _Raw:
    """The part of a urllib3 response that botocore reads a body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        yield self._body


class Ec2Api:
    """Records the EC2 calls of every client, injects errors, and rewrites reported states.

    - ``calls``: each API call (one per call, whatever its retries) as ``(operation, params)``;
    - ``sent``: HTTP attempts per operation, retries included;
    - ``clients_created``: EC2 clients built;
    - :meth:`fail`: the next N calls of an operation fail with an EC2 error (no HTTP request is made,
      so moto does not act on them);
    - :meth:`throttle`: the next N HTTP attempts of an operation get a 400 RequestLimitExceeded,
      the way EC2 answers; botocore's retry handler sees them as real responses;
    - :meth:`report_states`: the next DescribeInstances responses show given states for an
      instance (moto's instances never linger in ``stopping`` or ``pending``).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.sent: Counter[str] = Counter()
        self._faults: dict[str, list[tuple[str, str]]] = {}
        self._throttles: Counter[str] = Counter()
        self._states: dict[str, list[str]] = {}
        self.clients_created = 0

    # -- installing -------------------------------------------------------------------------------

    def handlers(self) -> list[tuple[str, Any]]:
        return [
            ("creating-client-class.ec2", self._count_client),
            ("before-parameter-build.ec2", self._record),
            ("before-call.ec2", self._inject_fault),
            ("before-send.ec2", self._throttle),
            ("after-call.ec2.DescribeInstances", self._rewrite_states),
        ]

    def install(self, monkeypatch: Any) -> Ec2Api:
        share_botocore_loader(monkeypatch)
        # moto builds ~20 000 default AMIs (with volumes) on every reset; these tests need none.
        monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        monkeypatch.setattr(
            botocore.handlers, "BUILTIN_HANDLERS", [*self.handlers(), *botocore.handlers.BUILTIN_HANDLERS]
        )
        return self

    # -- what tests ask for -----------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the calls so far (e.g. those that set a test up)."""
        self.calls.clear()
        self.sent.clear()
        self.clients_created = 0

    def fail(self, operation: str, code: str, message: str = "injected", times: int = 1) -> None:
        self._faults.setdefault(operation, []).extend([(code, message)] * times)

    def throttle(self, operation: str, times: int) -> None:
        self._throttles[operation] += times

    def report_states(self, instance_id: str, *states: str) -> None:
        self._states.setdefault(instance_id, []).extend(states)

    def count(self, operation: str) -> int:
        return sum(1 for name, _ in self.calls if name == operation)

    def params(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]

    # -- handlers ---------------------------------------------------------------------------------

    def _count_client(self, **kwargs: Any) -> None:
        self.clients_created += 1

    def _record(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def _inject_fault(self, model: Any, **kwargs: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        faults = self._faults.get(model.name)
        if not faults:
            return None
        code, message = faults.pop(0)
        response = AWSResponse("https://ec2.us-east-1.amazonaws.com/", 400, {}, _Raw(b""))
        return response, {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }

    def _throttle(self, request: Any, event_name: str, **kwargs: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        self.sent[operation] += 1
        if self._throttles[operation] <= 0:
            return None
        self._throttles[operation] -= 1
        return AWSResponse(request.url, 400, {"Content-Type": "text/xml"}, _Raw(THROTTLE_BODY))

    def _rewrite_states(self, parsed: dict[str, Any], **kwargs: Any) -> None:
        for reservation in parsed.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                queued = self._states.get(instance["InstanceId"])
                if queued:
                    instance["State"] = {"Name": queued.pop(0)}


def ec2_client() -> Any:
    return boto3.client("ec2", region_name="us-east-1")


def launch(
    client: Any, count: int = 1, state: str = "running", tags: dict[str, str] | None = None
) -> list[str]:
    """Create ``count`` instances in moto and bring them to ``state`` (running/stopped/terminated)."""
    kwargs: dict[str, Any] = {}
    if tags:
        kwargs["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    response = client.run_instances(
        ImageId=AMI, MinCount=count, MaxCount=count, InstanceType="t3.micro", **kwargs
    )
    ids = [instance["InstanceId"] for instance in response["Instances"]]
    if state == "stopped":
        client.stop_instances(InstanceIds=ids)
    elif state == "terminated":
        client.terminate_instances(InstanceIds=ids)
    return ids


def set_tags(client: Any, instance_id: str, tags: dict[str, str]) -> None:
    client.create_tags(Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])


def iid(n: int) -> str:
    """An EC2 instance ID of the real shape, numbered ``n``."""
    return f"i-{n:017x}"


I1, I2, I3 = iid(1), iid(2), iid(3)


def messages(events: list[dict[str, Any]]) -> list[Any]:
    """The messages of captured log events (``task_log``), in order."""
    return [entry["event"] for entry in events]


def text_of(events: list[dict[str, Any]], level: str | None = None) -> str:
    """Captured log messages (``task_log``) as one text, a line each; only those of ``level`` if given."""
    return "\n".join(str(e["event"]) for e in events if level is None or e["log_level"] == level)


def pushed_xcoms(context) -> dict:
    """The XComs an operator pushed through the context's MagicMock task instance."""
    return {call.kwargs["key"]: call.kwargs["value"] for call in context["ti"].xcom_push.call_args_list}


def start_operator(**kwargs):
    """A start operator that polls without waiting and at most three times, in the worker."""
    from operators.fleet_ec2_operators import FleetStartInstancesOperator

    kwargs.setdefault("waiter_delay", 0)
    kwargs.setdefault("waiter_max_attempts", 3)
    kwargs.setdefault("deferrable", False)
    return FleetStartInstancesOperator(task_id="start", **kwargs)


def stop_operator(**kwargs):
    """A stop operator like :func:`start_operator`."""
    from operators.fleet_ec2_operators import FleetStopInstancesOperator

    kwargs.setdefault("waiter_delay", 0)
    kwargs.setdefault("waiter_max_attempts", 3)
    kwargs.setdefault("deferrable", False)
    return FleetStopInstancesOperator(task_id="stop", **kwargs)
