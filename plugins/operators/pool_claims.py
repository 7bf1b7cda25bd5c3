"""The claim table: who holds which pool instance, in DynamoDB, atomic across processes and machines.

One table, one string key ``pk``:

- ``instance#<id>``: the instance is taken, by a project (``project``) or for retirement
  (``retiring``: the reconciler is about to terminate it, so no allocation can race it);
- ``project#<id>``: the instance the project holds (``instance_id``);
- ``health#<id>``: how many reconciles in a row found the idle instance not ready.

A claim writes the instance's and the project's items in one transaction, each on the condition
that it does not exist yet: of two requests for one instance, or two instances for one project,
exactly one wins, whichever process or machine they run on. There is no in-process lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

INSTANCE = "instance#"
PROJECT = "project#"
HEALTH = "health#"
RETIRING = "retiring"
_NEW = "attribute_not_exists(pk)"


class ClaimConflict(Exception):
    """The transaction lost: ``instance_taken`` and/or ``project_has_one`` says to whom."""

    def __init__(self, instance_taken: bool, project_has_one: bool) -> None:
        super().__init__(f"instance taken: {instance_taken}, project has one: {project_has_one}")
        self.instance_taken = instance_taken
        self.project_has_one = project_has_one


@dataclass(frozen=True)
class Claims:
    """One consistent read of the whole table."""

    by_instance: dict[str, dict[str, Any]]  # instance id -> its item (project or retiring)
    by_project: dict[str, dict[str, Any]]  # project id -> its item (instance_id, claimed_at)
    failures: dict[str, int]  # instance id -> readiness failures in a row


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {key: next(iter(value.values())) for key, value in item.items()}


class ClaimTable:
    def __init__(self, client: Any, table: str) -> None:
        self.client, self.table = client, table

    def read(self) -> Claims:
        """Every item, strongly consistent (a claim made a moment ago is in it)."""
        by_instance: dict[str, dict[str, Any]] = {}
        by_project: dict[str, dict[str, Any]] = {}
        failures: dict[str, int] = {}
        for page in self.client.get_paginator("scan").paginate(TableName=self.table, ConsistentRead=True):
            for raw in page["Items"]:
                item = _plain(raw)
                kind, _, key = item["pk"].partition("#")
                if f"{kind}#" == INSTANCE:
                    by_instance[key] = item
                elif f"{kind}#" == PROJECT:
                    by_project[key] = item
                elif f"{kind}#" == HEALTH:
                    failures[key] = int(item.get("failures", 0))
        return Claims(by_instance, by_project, failures)

    def project(self, project_id: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table, Key={"pk": _s(PROJECT + project_id)}, ConsistentRead=True
        )
        return _plain(response["Item"]) if "Item" in response else None

    def claim(self, instance_id: str, project_id: str, claimed_at: str) -> None:
        """Give the instance to the project, or raise :class:`ClaimConflict` and change nothing."""
        items = [
            {"pk": _s(INSTANCE + instance_id), "project": _s(project_id), "claimed_at": _s(claimed_at)},
            {"pk": _s(PROJECT + project_id), "instance_id": _s(instance_id), "claimed_at": _s(claimed_at)},
        ]
        self._transact(
            [{"Put": {"TableName": self.table, "Item": item, "ConditionExpression": _NEW}} for item in items]
        )

    def retire(self, instance_id: str, at: str) -> None:
        """Take an idle instance for termination (raises :class:`ClaimConflict` if it was just claimed)."""
        item = {"pk": _s(INSTANCE + instance_id), RETIRING: {"BOOL": True}, "claimed_at": _s(at)}
        self._transact([{"Put": {"TableName": self.table, "Item": item, "ConditionExpression": _NEW}}])

    def release(self, project_id: str, instance_id: str, at: str) -> None:
        """The project gives the instance back to be terminated: its instance item becomes a
        retirement in the same transaction, so nothing can allocate it before it is gone."""
        retiring = {"pk": _s(INSTANCE + instance_id), RETIRING: {"BOOL": True}, "claimed_at": _s(at)}
        self._transact(
            [
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": retiring,
                        "ConditionExpression": "attribute_not_exists(pk) OR #project = :p",
                        "ExpressionAttributeNames": {"#project": "project"},  # a reserved word
                        "ExpressionAttributeValues": {":p": _s(project_id)},
                    }
                },
                {
                    "Delete": {
                        "TableName": self.table,
                        "Key": {"pk": _s(PROJECT + project_id)},
                        "ConditionExpression": "instance_id = :i",
                        "ExpressionAttributeValues": {":i": _s(instance_id)},
                    }
                },
            ]
        )

    def forget(self, keys: list[str]) -> None:
        """Delete the items of instances that left the group (``instance#…``, ``health#…``, ``project#…``)."""
        for start in range(0, len(keys), 25):  # BatchWriteItem's limit
            requests = [{"DeleteRequest": {"Key": {"pk": _s(key)}}} for key in keys[start : start + 25]]
            pending = {self.table: requests}
            while pending:
                pending = self.client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    def set_failures(self, counts: dict[str, int]) -> None:
        """Store each instance's readiness failures in a row (0 deletes the count)."""
        zeros = [HEALTH + i for i, n in counts.items() if n == 0]
        if zeros:
            self.forget(zeros)
        for instance_id, count in counts.items():
            if count:
                self.client.put_item(
                    TableName=self.table,
                    Item={"pk": _s(HEALTH + instance_id), "failures": {"N": str(count)}},
                )

    def _transact(self, items: list[dict[str, Any]]) -> None:
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            codes = [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]
            # TransactionConflict: another transaction is writing the same item right now, which
            # for a claim is the same answer as finding it written.
            lost = [code in ("ConditionalCheckFailed", "TransactionConflict") for code in codes]
            if not any(lost):
                raise  # throttling or a validation error: not a conflict
            failed = [*lost, False, False]
            raise ClaimConflict(instance_taken=failed[0], project_has_one=failed[1]) from None
