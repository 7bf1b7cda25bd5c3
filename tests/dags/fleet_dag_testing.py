"""Helpers of the DAG tests: small fleet configs, the agent command's parser, the parse-time guard."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import botocore.client
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"


def fleet_dict(**overrides: Any) -> dict[str, Any]:
    """A small valid fleet: a signer and one role with two jobs."""
    data: dict[str, Any] = {
        "timezone": "UTC",
        "schedule": "0 0 * * *",
        "aws_conn_id": "aws_default",
        "region": "us-east-1",
        "signer": {"instance": "i-0000000000000000a"},
        "roles": [
            {
                "name": "tasks",
                "instance": "i-0000000000000000b",
                "max_runtime": "1h",
                "jobs": [
                    {
                        "name": "backoffice",
                        "argv": ["python", "aws_run.py"],
                        "cwd": "/root/backoffice",
                        "timeout": "30m",
                    },
                    {"name": "shield", "argv": ["python", "valuate-and-run.py", "damm"], "timeout": 600},
                ],
            }
        ],
    }
    data.update(overrides)
    return data


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


SPEC_OPEN = "<<'FLEET_SPEC'\n"
SPEC_CLOSE = "\nFLEET_SPEC"


def parse_agent_command(script: str) -> dict[str, Any]:
    """The agent invocation of the DAG's run_agent script: argv options and the heredoc spec."""
    head, _, rest = script.partition(SPEC_OPEN)
    spec_text, closed, _ = rest.partition(SPEC_CLOSE)
    assert closed, f"no FLEET_SPEC heredoc in {script!r}"
    argv = shlex.split(head)
    options = {
        argv[i][2:]: argv[i + 1]
        for i in range(len(argv) - 1)
        if argv[i].startswith("--") and argv[i] != "--force"
    }
    return {"argv": argv, "options": options, "force": "--force" in argv, "spec": json.loads(spec_text)}


class ParseGuard:
    """Fails any AWS call and any Variable read, and remembers them, while a DagBag parses."""

    def __init__(self) -> None:
        self.aws_calls: list[str] = []
        self.variable_reads: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> ParseGuard:
        from airflow.models.variable import Variable as CoreVariable
        from airflow.sdk import Variable

        def api_call(client, operation_name, api_params):
            self.aws_calls.append(operation_name)
            raise RuntimeError(f"AWS call {operation_name} at parse time")

        def variable_get(key, *args, **kwargs):
            self.variable_reads.append(key)
            raise RuntimeError(f"Variable.get({key!r}) at parse time")

        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", api_call)
        monkeypatch.setattr(Variable, "get", staticmethod(variable_get))
        monkeypatch.setattr(CoreVariable, "get", staticmethod(variable_get))
        return self
