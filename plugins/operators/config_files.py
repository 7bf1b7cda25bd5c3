"""What the fleet config and the pool config share: reading the YAML file, durations, and an
error that names the file, the field path (``roles[1].jobs[0].name``) and the bad value.

It lives with the operators, not with the DAGs: Airflow's API server, which serves the pool's API,
has ``plugins/`` on its path but not ``dags/``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from instance_agent.display import shorten
from instance_agent.spec import SpecError, check_seconds

_DURATION = re.compile(r"\s*(?:(?P<h>[0-9]+)h)?\s*(?:(?P<m>[0-9]+)m)?\s*(?:(?P<s>[0-9]+)s)?\s*")
Model = TypeVar("Model", bound=BaseModel)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_duration(value: Any) -> timedelta:
    """``90`` (seconds), ``"45s"``, ``"30m"``, ``"2h"``, ``"1h30m"`` → a positive timedelta.

    The seconds follow the agent's rule, so ``10**400`` or ``.inf`` is a config error, never an
    OverflowError.
    """
    if isinstance(value, timedelta):
        seconds: Any = value.total_seconds()
    elif isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if not match or not any(match.groupdict().values()):
            raise ValueError(
                f"not a duration (use seconds or e.g. '45s', '30m', '2h', '1h30m'): {shorten(value)}"
            )
        parts = {key: int(number or 0) for key, number in match.groupdict().items()}
        seconds = parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    else:
        seconds = value  # a number (a bool is refused by check_seconds), or anything else
    try:
        return timedelta(seconds=check_seconds(seconds))
    except SpecError as error:
        shown = "" if seconds is value else f" ({shorten(value)})"
        raise ValueError(f"not a valid duration{shown}: {error.problem}") from None


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def field_path(location: tuple[Any, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        text = str(part)
        if len(text) > 64 or not text.isprintable():  # a key from the file: cut and escaped
            text = shorten(text, 40)
        path += f".{text}" if path else text
    return path or "(top level)"


def describe(error: ValidationError, source: str, what: str) -> str:
    lines = [f"{source}: invalid {what}"]
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "string_pattern_mismatch" and "pattern" in item.get("ctx", {}):
            message = f"does not match {item['ctx']['pattern']}"
        value = item.get("input")
        shown = shorten(value)  # never a 100 kB line: every value is cut the agent's way
        # Name the bad value unless the message already does (or it is a whole section).
        hidden = (isinstance(value, dict | list) and bool(value)) or shown in message
        lines.append(f"  {field_path(item['loc'])}: {message}{'' if hidden else f' (got {shown})'}")
    return "\n".join(lines)


def validate(model: type[Model], data: Any, source: str, what: str, error: type[Exception]) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as invalid:
        raise error(describe(invalid, source, what)) from None


def read_yaml(source: Path, what: str, error: type[Exception]) -> Any:
    try:
        # libyaml's loader when PyYAML has it: the pure-Python one takes ~0.2 s for 300 roles.
        return yaml.load(source.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except OSError as problem:
        raise error(f"{source}: cannot read the {what}: {problem.strerror}") from None
    except yaml.YAMLError as problem:
        raise error(f"{source}: not valid YAML: {problem}") from None
