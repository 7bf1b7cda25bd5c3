"""Helpers of the DAG tests: small fleet configs, and an SSM emulation with a fake agent.

moto has no DescribeInstanceInformation or ListCommandInvocations, and its SendCommand does
nothing. :class:`SsmEmulator` answers every SSM call the DAG makes from botocore ``before-call``
handlers (no HTTP request, moto never sees them), and its SendCommand plays the instance agent:
it reads the role, run date and job spec from the command the DAG rendered, writes the agent's
final tags onto the instance in moto, uploads the job logs to S3 and stops the instance.
"""

from __future__ import annotations

import json
import shlex
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import botocore.handlers
import pytest
import yaml
from botocore.awsrequest import AWSResponse
from fleet_testing import share_botocore_loader, states

from instance_agent.protocol import AgentReport, s3_job_log

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


class _Raw:
    def __init__(self, body: bytes = b"") -> None:
        self._body = body

    def stream(self, *args: Any, **kwargs: Any):
        yield self._body


class SsmEmulator:
    """Answers the DAG's SSM calls; records every EC2 and SSM call in ``calls``, in order."""

    def __init__(self, signer: str, exit_codes: dict[str, int] | None = None) -> None:
        self.signer = signer
        self.exit_codes = exit_codes or {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.commands: dict[str, dict[str, Any]] = {}
        self.sent: list[dict[str, Any]] = []

    def install(self, monkeypatch: Any) -> SsmEmulator:
        share_botocore_loader(monkeypatch)
        # moto builds ~20 000 default AMIs on every reset; these tests need none.
        monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        handlers = [
            ("before-parameter-build.ec2", self._record),
            ("before-parameter-build.ssm", self._record),
            ("before-call.ssm", self._answer),
        ]
        monkeypatch.setattr(
            botocore.handlers, "BUILTIN_HANDLERS", [*handlers, *botocore.handlers.BUILTIN_HANDLERS]
        )
        return self

    def operations(self) -> list[str]:
        return [name for name, _ in self.calls]

    def _record(self, params: dict[str, Any], model: Any, context: dict[str, Any], **kwargs: Any) -> None:
        self.calls.append((model.name, dict(params)))
        # before-call sees the serialized request; the API parameters travel in the call's context.
        context["fleet_api_params"] = dict(params)

    def _answer(self, model: Any, context: dict[str, Any], **kwargs: Any):
        handler = getattr(self, f"_{model.name}", None)
        if handler is None:
            raise AssertionError(f"the DAG made an SSM call the emulation does not expect: {model.name}")
        parsed = handler(context["fleet_api_params"])
        return AWSResponse("https://ssm.us-east-1.amazonaws.com/", 200, {}, _Raw()), parsed

    # -- SSM ------------------------------------------------------------------------------------

    def _DescribeInstanceInformation(self, params):
        ids = next(f["Values"] for f in params["Filters"] if f["Key"] == "InstanceIds")
        return {
            "InstanceInformationList": [
                {
                    "InstanceId": i,
                    "PingStatus": "Online",
                    "AgentVersion": "3.3.0",
                    "PlatformName": "Amazon Linux",
                }
                for i in ids
            ]
        }

    def _ListCommands(self, params):
        return {
            "Commands": [
                command["summary"]
                for command in self.commands.values()
                if params.get("InstanceId") in command["summary"]["InstanceIds"]
            ]
        }

    def _SendCommand(self, params):
        ec2 = boto3.client("ec2", region_name="us-east-1")
        signer_state = states(ec2, [self.signer])[self.signer]
        invocation = parse_agent_command(params["Parameters"]["commands"][0])
        command_id = str(uuid.uuid4())
        self.sent.append(
            {**invocation, "command_id": command_id, "signer_state": signer_state, "request": params}
        )
        for instance_id in params["InstanceIds"]:
            self._play_agent(ec2, instance_id, invocation)
        summary = {
            "CommandId": command_id,
            "DocumentName": params["DocumentName"],
            "Comment": params.get("Comment", ""),
            "InstanceIds": list(params["InstanceIds"]),
            "Status": "Success",
        }
        self.commands[command_id] = {"summary": summary}
        return {"Command": {**summary, "Status": "Pending"}}

    def _ListCommandInvocations(self, params):
        summary = self.commands[params["CommandId"]]["summary"]
        return {
            "CommandInvocations": [
                {"CommandId": summary["CommandId"], "InstanceId": i, "Status": "Success"}
                for i in summary["InstanceIds"]
            ]
        }

    def _GetCommandInvocation(self, params):
        return {
            "CommandId": params["CommandId"],
            "InstanceId": params["InstanceId"],
            "Status": "Success",
            "ResponseCode": 0,
            "ExecutionStartDateTime": "2026-11-23T00:01:00.000Z",
            "ExecutionEndDateTime": "2026-11-23T00:01:02.000Z",
            "StandardOutputContent": "agent detached",
            "StandardErrorContent": "",
        }

    # -- the agent ------------------------------------------------------------------------------

    def _play_agent(self, ec2: Any, instance_id: str, invocation: dict[str, Any]) -> None:
        jobs = [job["name"] for job in invocation["spec"]["jobs"]]
        outcomes = {job: self.exit_codes.get(job, 0) for job in jobs}
        report = AgentReport(
            role=invocation["options"]["role"],
            run_date=invocation["options"]["date"],
            state="succeeded" if not any(outcomes.values()) else "failed",
            heartbeat=datetime.now(UTC),
            progress=f"{len(jobs)}/{len(jobs)}",
            jobs=outcomes,
            durations=dict.fromkeys(jobs, 7),
        )
        ec2.create_tags(
            Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in report.to_tags().items()]
        )
        prefix = invocation["spec"].get("s3_log_prefix")
        if prefix:
            s3 = boto3.client("s3", region_name="us-east-1")
            for job in jobs:
                bucket, key = s3_job_log(prefix, report.run_date, report.role, job)
                s3.put_object(
                    Bucket=bucket, Key=key, Body=f"{job} starting\n{job} done for {report.run_date}\n"
                )
        ec2.stop_instances(InstanceIds=[instance_id])


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
