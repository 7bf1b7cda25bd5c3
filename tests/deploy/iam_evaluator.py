"""A small IAM evaluator: enough for the condition operators the project's policies use."""

from __future__ import annotations

import fnmatch
import re


def statements(document: dict) -> list[dict]:
    found = document["Statement"]
    return found if isinstance(found, list) else [found]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _substitute(text: str, context: dict) -> str | None:
    missing = False

    def value(match: re.Match) -> str:
        nonlocal missing
        if match.group(1) not in context:
            missing = True
            return ""
        return str(context[match.group(1)])

    result = re.sub(r"\$\{([^}]+)\}", value, text)
    return None if missing else result


def _like(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


def _condition_holds(operator: str, block: dict, context: dict) -> bool:
    for key, wanted in block.items():
        wanted = [_substitute(str(item), context) for item in as_list(wanted)]
        present = key in context
        if operator == "Null":
            if (wanted[0] == "true") == present:
                return False
            continue
        if operator.startswith("ForAllValues:"):
            compare = _comparer(operator.split(":", 1)[1])
            if present and not all(any(compare(w, v) for w in wanted) for v in as_list(context[key])):
                return False
            continue
        if not present:
            return False
        compare = _comparer(operator)
        if not any(compare(w, str(context[key])) for w in wanted):
            return False
    return True


def _comparer(operator: str):
    comparers = {
        "StringEquals": lambda wanted, value: wanted is not None and wanted == value,
        "StringLike": lambda wanted, value: wanted is not None and _like(wanted, value),
        "ArnEquals": lambda wanted, value: wanted is not None and wanted == value,
        "ArnLike": lambda wanted, value: wanted is not None and _like(wanted, value),
    }
    if operator not in comparers:
        raise AssertionError(f"the test evaluator does not know condition operator {operator!r}")
    return comparers[operator]


def allowed(document: dict, action: str, resource: str, context: dict | None = None) -> bool:
    """Whether ``document`` allows ``action`` on ``resource`` (implicit deny otherwise)."""
    context = {"aws:ARN": resource, **(context or {})}
    verdict = False
    for statement in statements(document):
        if not any(_like(pattern.lower(), action.lower()) for pattern in as_list(statement["Action"])):
            continue
        resources = [_substitute(pattern, context) for pattern in as_list(statement["Resource"])]
        if not any(pattern is not None and _like(pattern, resource) for pattern in resources):
            continue
        if all(_condition_holds(op, block, context) for op, block in statement.get("Condition", {}).items()):
            if statement["Effect"] == "Deny":
                return False
            verdict = True
    return verdict
