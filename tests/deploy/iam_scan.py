"""What the code calls: every boto3 call under some folders, as the IAM actions it needs."""

from __future__ import annotations

import ast
import fnmatch
import functools
import re
from pathlib import Path

import botocore.session

REPO = Path(__file__).resolve().parents[2]

# boto3 client methods that are no API operation of their own.
NOT_OPERATIONS = {"get_paginator", "get_waiter", "can_paginate", "close"}
# boto3 customizations: the operations they make. upload_file switches to a multipart upload for
# big files (CreateMultipartUpload/UploadPart/CompleteMultipartUpload are s3:PutObject) and aborts
# it on failure.
# A DynamoDB transaction is authorized item by item, as the writes it holds (the pool's claims put
# and delete); IAM has no TransactWriteItems action.
CUSTOMIZATIONS = {
    "upload_file": ("s3", ["s3:PutObject", "s3:AbortMultipartUpload"]),
    "transact_write_items": ("dynamodb", ["dynamodb:PutItem", "dynamodb:DeleteItem"]),
}
SERVICES = ("ec2", "ssm", "s3", "autoscaling", "dynamodb")
# The operators' service layer (imported as ``ec2`` and ``ssm``), see _service_layer_functions.
SERVICE_LAYER = ("plugins/operators/fleet_ec2.py", "plugins/operators/fleet_ssm.py")

CALL = re.compile(r"\b(conn|client|ec2|s3|ssm|autoscaling)\.([a-z][a-z0-9_]*)\(")
# Auto Scaling shares operation names with EC2 (create_tags, delete_tags): only a call on a client
# named ``autoscaling`` is one of its calls.
BY_RECEIVER_ONLY = ("autoscaling",)
# The warm pool's modules run under their own policy (pool-policy.json), the rest under Airflow's.
POOL_FILES = ("pool_*.py", "fleet_pool*.py")
PAGINATOR = re.compile(r"get_paginator\(\s*[\"']([a-z0-9_]+)[\"']\s*\)")
HOOK_METHOD = re.compile(r"\bhook\.(?!conn\b)([a-z_]+)\(")


@functools.cache
def _operation_services() -> dict[str, dict[str, str]]:
    """{service: {boto3 method name: IAM action}} from botocore's own service models."""
    session = botocore.session.get_session()
    result = {}
    for service in SERVICES:
        model = session.get_service_model(service)
        result[service] = {
            botocore.xform_name(operation): f"{service}:{operation}" for operation in model.operation_names
        }
    return result


def _service_layer_functions() -> set[str]:
    """The functions of the operators' EC2 and SSM modules, called as ``ec2.x()`` / ``ssm.x()``.

    Their names look like client calls to the scan; the boto3 calls they make are in those
    modules themselves, which the scan reads like any other.
    """
    names = set()
    for module in SERVICE_LAYER:
        tree = ast.parse((REPO / module).read_text())
        names |= {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    return names


def is_pool_file(path: Path) -> bool:
    return any(fnmatch.fnmatch(path.name, pattern) for pattern in POOL_FILES)


def actions_called(*folders: str, root: Path = REPO, pool: bool | None = None) -> dict[str, set[str]]:
    """{IAM action: files that need it} for every boto3 call under ``folders`` (or files) of ``root``;
    ``pool`` True/False: only the warm pool's files, or only the others."""
    operations = _operation_services()
    known = set().union(*operations.values())
    # A service-layer function named like an operation (ec2.describe_instances) maps to it: it makes it.
    layer = _service_layer_functions() - known
    needed: dict[str, set[str]] = {}
    unknown = []
    for folder in folders:
        where_to_look = root / folder
        for path in [where_to_look] if where_to_look.is_file() else sorted(where_to_look.rglob("*.py")):
            if pool is not None and is_pool_file(path) != pool:
                continue
            text = path.read_text()
            where = path.relative_to(root).as_posix()
            unknown += [f"{where}: hook.{name}()" for name in HOOK_METHOD.findall(text)]
            calls = [(r, m) for r, m in CALL.findall(text) if m not in NOT_OPERATIONS | layer]
            calls += [("", method) for method in PAGINATOR.findall(text)]
            for receiver, method in calls:
                if method in CUSTOMIZATIONS:
                    actions = CUSTOMIZATIONS[method][1]
                else:
                    services = (
                        [receiver]
                        if receiver in BY_RECEIVER_ONLY
                        else [s for s in SERVICES if s not in BY_RECEIVER_ONLY]
                    )
                    owners = [service for service in services if method in operations[service]]
                    if len(owners) != 1:
                        unknown.append(f"{where}: {method}() is in {owners or 'no'} service model(s)")
                        continue
                    actions = [operations[owners[0]][method]]
                for action in actions:
                    needed.setdefault(action, set()).add(where)
    # A call this scan cannot map must be added to the tables above by someone who read it.
    assert not unknown, "boto3 calls the test cannot map to IAM actions:\n" + "\n".join(unknown)
    return needed
