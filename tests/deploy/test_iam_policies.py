"""deploy/iam/*.json: linted by parliament, least privilege, and enough for what the code calls.

The policies are templates: ACCOUNT_ID, REGION, BUCKET and PREFIX are replaced at deploy time
(README.md, "Deploying to real AWS"). The tests render them with sample values, then:

- lint them with parliament (offline; its IAM definitions ship with it): no finding but the two
  documented ones in ``ACCEPTED_FINDINGS``;
- check every action exists, none is a wildcard, and ``Resource: "*"`` appears only for actions
  that IAM cannot scope to a resource;
- find every boto3 call in ``plugins/`` (Airflow) and ``instance_agent/`` (the VMs), turn it into
  the IAM action(s) it needs, and evaluate each against the policy with a small IAM evaluator:
  the real request shape is allowed, and the neighbouring requests that must not be (another
  instance, another document, another tag, another prefix) are denied.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import parliament
import pytest
from iam_evaluator import allowed, as_list, statements
from iam_scan import actions_called
from parliament import analyze_policy_string

from instance_agent.protocol import ALL_TAGS

REPO = Path(__file__).resolve().parents[2]
IAM_DIR = REPO / "deploy" / "iam"

SAMPLE = {
    "ACCOUNT_ID": "123456789012",
    "REGION": "us-east-1",
    "BUCKET": "example-fleet-logs",
    "PREFIX": "fleet-logs",
    "GROUP": "vscode-asg",
    "TABLE": "fleet-pool-claims",
}
FLEET_TAG = "fleet:managed"

SELF = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"
OTHER = "arn:aws:ec2:us-east-1:123456789012:instance/i-0fedcba9876543210"
TAGGED = {f"aws:ResourceTag/{FLEET_TAG}": "true", f"ssm:resourceTag/{FLEET_TAG}": "true"}
RUN_SHELL_SCRIPT = "arn:aws:ssm:us-east-1::document/AWS-RunShellScript"
LOG_OBJECT = "arn:aws:s3:::example-fleet-logs/fleet-logs/2026-11-23/tasks/backoffice.log"

# parliament findings reviewed and accepted, each with its reason: (policy, Sid, issue) -> why.
ACCEPTED_FINDINGS = {
    ("airflow-policy.json", "SendOnlyToFleetInstances", "RESOURCE_MISMATCH"): (
        "IAM authorizes each resource of a SendCommand on its own, so the document and the instances "
        "can sit in separate statements with separate conditions; that is how AWS's own 'restrict Run "
        "Command by tags' example is written. One statement would put the tag condition on the "
        "AWS-owned document too, which has no tags, and deny every command."
    ),
    ("instance-policy.json", "WriteOwnProtocolTags", "UNKNOWN_CONDITION_FOR_ACTION"): (
        "aws:ARN (the ARN of the resource acted on) compared with ${ec2:SourceInstanceARN} (the "
        "instance whose role signed the request) is how an instance is limited to itself; IAM's "
        "per-action key lists do not name aws:ARN. Were it absent, StringEquals fails: it can only deny."
    ),
    ("instance-policy.json", "StopItself", "UNKNOWN_CONDITION_FOR_ACTION"): (
        "same aws:ARN = ${ec2:SourceInstanceARN} self-restriction as WriteOwnProtocolTags"
    ),
    ("pool-instance-policy.json", "TagOwnNotice", "UNKNOWN_CONDITION_FOR_ACTION"): (
        "same aws:ARN = ${ec2:SourceInstanceARN} self-restriction as WriteOwnProtocolTags"
    ),
}


def render(name: str) -> str:
    text = (IAM_DIR / name).read_text()
    for placeholder, value in SAMPLE.items():
        text = text.replace(placeholder, value)
    return text


def policy(name: str) -> dict:
    return json.loads(render(name))


@functools.cache
def iam_definitions() -> dict[str, dict[str, dict]]:
    """parliament's copy of the IAM service authorization reference: {prefix: {action: privilege}}."""
    path = Path(parliament.__file__).parent / "iam_definition.json"
    return {
        service["prefix"]: {privilege["privilege"].lower(): privilege for privilege in service["privileges"]}
        for service in json.loads(path.read_text())
    }


# Each action the code needs, as the request it really makes: (resource, request context).
AIRFLOW_REQUESTS = {
    "ec2:DescribeInstances": [("*", {})],
    "ec2:DescribeInstanceStatus": [("*", {})],
    "ec2:StartInstances": [(OTHER, TAGGED)],
    "ec2:StopInstances": [(OTHER, TAGGED)],
    "ssm:SendCommand": [(RUN_SHELL_SCRIPT, {}), (OTHER, TAGGED)],
    "ssm:DescribeInstanceInformation": [("*", {})],
    "ssm:ListCommands": [("*", {})],
    "ssm:ListCommandInvocations": [("*", {})],
    "ssm:GetCommandInvocation": [("*", {})],
    "ssm:CancelCommand": [("*", {})],
    "s3:GetObject": [(LOG_OBJECT, {})],
}
ON_ITSELF = {"ec2:SourceInstanceARN": SELF, **TAGGED}
INSTANCE_REQUESTS = {
    "ec2:CreateTags": [(SELF, {**ON_ITSELF, "aws:TagKeys": list(ALL_TAGS)})],
    "ec2:DeleteTags": [(SELF, {**ON_ITSELF, "aws:TagKeys": ["fleet:notice"]})],
    "ec2:StopInstances": [(SELF, ON_ITSELF)],
    "s3:PutObject": [(LOG_OBJECT, {})],
    "s3:AbortMultipartUpload": [(LOG_OBJECT, {})],
}
POOL_GROUP = (
    "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:0a1b:autoScalingGroupName/vscode-asg"
)
POOL_TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/fleet-pool-claims"
IN_POOL = {"aws:ResourceTag/aws:autoscaling:groupName": "vscode-asg"}
POOL_REQUESTS = {
    "autoscaling:DescribeAutoScalingGroups": [("*", {})],
    "autoscaling:SetDesiredCapacity": [(POOL_GROUP, {})],
    "autoscaling:SetInstanceProtection": [(POOL_GROUP, {})],
    "autoscaling:TerminateInstanceInAutoScalingGroup": [(POOL_GROUP, {})],
    "ec2:DescribeInstances": [("*", {})],
    "ec2:CreateTags": [(OTHER, {**IN_POOL, "aws:TagKeys": ["fleet:pool-project", "fleet:pool-claimed-at"]})],
    **{
        f"dynamodb:{verb}": [(POOL_TABLE, {})]
        for verb in ("BatchWriteItem", "DeleteItem", "GetItem", "PutItem", "Scan")
    },
}
ON_ITSELF_IN_POOL = {"ec2:SourceInstanceARN": SELF, **IN_POOL}
POOL_INSTANCE_REQUESTS = {"ec2:CreateTags": [(SELF, {**ON_ITSELF_IN_POOL, "aws:TagKeys": ["fleet:notice"]})]}
# policy: (folders or files, pool files or not, the requests)
POLICIES = {
    "airflow-policy.json": (("plugins", "dags"), False, AIRFLOW_REQUESTS),
    "instance-policy.json": (("instance_agent",), None, INSTANCE_REQUESTS),
    "pool-policy.json": (("plugins", "dags"), True, POOL_REQUESTS),
    "pool-instance-policy.json": (("instance_agent/notice_watch.py",), None, POOL_INSTANCE_REQUESTS),
}


class TestPolicyLint:
    @pytest.mark.parametrize("name", sorted(POLICIES))
    def test_parliament_finds_nothing_but_the_accepted_findings(self, name):
        text = render(name)
        sid_lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if '"Sid"' in line]

        def sid_at(line: int) -> str:
            # A finding points at its statement's opening brace or at a line inside it.
            _, sid_line = max((n, s) for n, s in sid_lines if n <= line + 1)
            return json.loads("{" + sid_line.strip().rstrip(",") + "}")["Sid"]

        findings = analyze_policy_string(text, filepath=name, include_community_auditors=True).findings
        seen = {(name, sid_at(f.location["line"]), f.issue): f.detail for f in findings}
        unexpected = {key: detail for key, detail in seen.items() if key not in ACCEPTED_FINDINGS}
        assert not unexpected, f"parliament findings: {unexpected}"
        stale = {key for key in ACCEPTED_FINDINGS if key[0] == name} - set(seen)
        assert not stale, f"accepted findings parliament no longer reports (drop them): {stale}"

    @pytest.mark.parametrize(
        ("statement", "issue"),
        [
            ({"Action": "ec2:StartInstance", "Resource": "*"}, "UNKNOWN_ACTION"),
            ({"Action": "ec2:StartInstances", "Resource": "*"}, "RESOURCE_STAR"),
        ],
    )
    def test_parliament_is_live(self, statement, issue):
        bad = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **statement}]}
        assert issue in {f.issue for f in analyze_policy_string(json.dumps(bad)).findings}

    @pytest.mark.parametrize("name", sorted(POLICIES))
    def test_every_action_exists_and_none_is_a_wildcard(self, name):
        definitions = iam_definitions()
        for statement in statements(policy(name)):
            assert statement["Effect"] == "Allow", f"{name} {statement.get('Sid')}: only Allow statements"
            assert "NotAction" not in statement and "NotResource" not in statement
            for action in as_list(statement["Action"]):
                assert "*" not in action and "?" not in action, f"{name}: wildcard action {action}"
                prefix, _, verb = action.partition(":")
                assert verb.lower() in definitions.get(prefix, {}), f"{name}: unknown action {action}"

    @pytest.mark.parametrize("name", sorted(POLICIES))
    def test_resource_star_only_where_iam_has_no_resource_type(self, name):
        definitions = iam_definitions()
        for statement in statements(policy(name)):
            if "*" not in as_list(statement["Resource"]):
                continue
            for action in as_list(statement["Action"]):
                prefix, _, verb = action.partition(":")
                types = [t["resource_type"] for t in definitions[prefix][verb.lower()]["resource_types"]]
                assert not any(types), f"{name} {statement['Sid']}: {action} can be scoped to {types}, not *"

    @pytest.mark.parametrize("name", sorted(POLICIES))
    def test_placeholders_are_the_documented_ones(self, name):
        raw = (IAM_DIR / name).read_text()
        arns = re.findall(r'"(arn:[^"]*)"', raw)
        words = {word for arn in arns for word in re.findall(r"\b[A-Z][A-Z_]{2,}\b(?!-)", arn)}
        assert words <= set(SAMPLE), f"{name}: unknown placeholders {words - set(SAMPLE)}"
        readme = (REPO / "README.md").read_text()
        for placeholder in sorted(words):
            assert f"`{placeholder}`" in readme, f"README.md does not explain {placeholder}"
        assert f"`{FLEET_TAG}`" in readme, "README.md does not name the fleet tag the policies require"


class TestPolicyCoversTheCode:
    @pytest.mark.parametrize("name", sorted(POLICIES))
    def test_the_request_table_lists_exactly_what_the_code_calls(self, name):
        folders, pool, requests = POLICIES[name]
        called = actions_called(*folders, pool=pool)
        assert set(called) == set(requests), (
            f"{name}: the code calls {sorted(set(called) - set(requests))} that the table lacks, "
            f"the table has {sorted(set(requests) - set(called))} that no code calls"
        )

    def test_the_scan_finds_new_calls_and_refuses_what_it_cannot_map(self, tmp_path):
        (tmp_path / "pkg").mkdir()
        (tmp_path / "pkg" / "a.py").write_text(
            "self.hook.conn.terminate_instances(InstanceIds=ids)\n"
            "pages = client.get_paginator('list_documents')\n"
            "s3.upload_file(path, bucket, key)\n"
        )
        assert actions_called("pkg", root=tmp_path) == {
            "ec2:TerminateInstances": {"pkg/a.py"},
            "ssm:ListDocuments": {"pkg/a.py"},
            "s3:PutObject": {"pkg/a.py"},
            "s3:AbortMultipartUpload": {"pkg/a.py"},
        }
        # A provider hook method hides its API calls: the scan must not guess them.
        (tmp_path / "pkg" / "b.py").write_text("state = self.hook.get_instance_state(instance_id)\n")
        with pytest.raises(AssertionError, match=r"pkg/b.py: hook.get_instance_state"):
            actions_called("pkg", root=tmp_path)

    @pytest.mark.parametrize("name", sorted(POLICIES))
    def test_every_call_the_code_makes_is_allowed(self, name):
        document = policy(name)
        denied = [
            f"{action} on {resource}"
            for action, requests in POLICIES[name][2].items()
            for resource, context in requests
            if not allowed(document, action, resource, context)
        ]
        assert not denied, f"{name} denies what the code needs: {denied}"

    @pytest.mark.parametrize("name", sorted(POLICIES))
    def test_the_policy_grants_nothing_the_code_does_not_call(self, name):
        granted = {action for s in statements(policy(name)) for action in as_list(s["Action"])}
        assert granted == set(POLICIES[name][2])


class TestAirflowPolicyLimits:
    document = staticmethod(lambda: policy("airflow-policy.json"))

    @pytest.mark.parametrize("action", ["ec2:StartInstances", "ec2:StopInstances", "ssm:SendCommand"])
    def test_instances_without_the_fleet_tag_are_out_of_reach(self, action):
        assert allowed(self.document(), action, OTHER, TAGGED)
        assert not allowed(self.document(), action, OTHER, {})
        assert not allowed(self.document(), action, OTHER, {k: "false" for k in TAGGED})

    def test_only_the_run_shell_script_document_can_be_sent(self):
        other_document = "arn:aws:ssm:us-east-1::document/AWS-RunPowerShellScript"
        assert not allowed(self.document(), "ssm:SendCommand", other_document)
        custom = "arn:aws:ssm:us-east-1:123456789012:document/MyScript"
        assert not allowed(self.document(), "ssm:SendCommand", custom)

    def test_logs_are_readable_under_the_prefix_only(self):
        assert not allowed(self.document(), "s3:GetObject", "arn:aws:s3:::example-fleet-logs/other/x.log")
        assert not allowed(self.document(), "s3:PutObject", LOG_OBJECT)

    def test_nothing_beyond_the_fleet_workflow(self):
        for action in ("ec2:TerminateInstances", "ec2:RunInstances", "ec2:CreateTags", "ssm:StartSession"):
            assert not allowed(self.document(), action, OTHER, TAGGED), action


class TestInstancePolicyLimits:
    document = staticmethod(lambda: policy("instance-policy.json"))

    @pytest.mark.parametrize("action", ["ec2:StopInstances", "ec2:CreateTags"])
    def test_an_instance_acts_on_itself_only(self, action):
        context = {**ON_ITSELF, "aws:TagKeys": ["fleet:state"]}
        assert allowed(self.document(), action, SELF, context)
        assert not allowed(self.document(), action, OTHER, context), f"{action} on another fleet instance"
        assert not allowed(self.document(), action, SELF, {**context, "ec2:SourceInstanceARN": OTHER})

    def test_requests_not_signed_by_an_instance_do_nothing(self):
        # No ec2:SourceInstanceARN in the request context: not an instance profile's credentials.
        context = {**TAGGED, "aws:TagKeys": ["fleet:state"]}
        assert not allowed(self.document(), "ec2:StopInstances", SELF, context)
        assert not allowed(self.document(), "ec2:CreateTags", SELF, context)

    @pytest.mark.parametrize("action", ["ec2:CreateTags", "ec2:DeleteTags"])
    def test_only_the_protocol_tags(self, action):
        for key in ALL_TAGS:
            assert allowed(self.document(), action, SELF, {**ON_ITSELF, "aws:TagKeys": [key]}), key
        # The fleet tag gates what Airflow may start: an instance must not be able to drop or forge it.
        for keys in ([FLEET_TAG], ["Name"], ["fleet:state", FLEET_TAG]):
            assert not allowed(self.document(), action, SELF, {**ON_ITSELF, "aws:TagKeys": keys}), keys

    def test_delete_tags_without_keys_is_denied(self):
        # DeleteTags with no Tags removes every tag; the Null condition keeps ForAllValues honest.
        assert not allowed(self.document(), "ec2:DeleteTags", SELF, ON_ITSELF)

    def test_logs_are_writable_under_the_prefix_only(self):
        assert allowed(self.document(), "s3:PutObject", LOG_OBJECT)
        assert not allowed(self.document(), "s3:PutObject", "arn:aws:s3:::example-fleet-logs/x.log")
        assert not allowed(self.document(), "s3:GetObject", LOG_OBJECT)

    def test_the_agent_tags_are_the_protocol_tags(self):
        condition = next(s for s in statements(self.document()) if s["Sid"] == "WriteOwnProtocolTags")
        assert set(condition["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"]) == set(ALL_TAGS)


class TestPoolPolicyLimits:
    document = staticmethod(lambda: policy("pool-policy.json"))

    @pytest.mark.parametrize(
        "action",
        [
            "autoscaling:SetDesiredCapacity",
            "autoscaling:SetInstanceProtection",
            "autoscaling:TerminateInstanceInAutoScalingGroup",
        ],
    )
    def test_only_the_pools_group(self, action):
        assert allowed(self.document(), action, POOL_GROUP)
        assert not allowed(self.document(), action, POOL_GROUP.replace("vscode-asg", "web-asg"))

    def test_claim_tags_only_on_the_pools_instances(self):
        keys = {"aws:TagKeys": ["fleet:pool-project"]}
        assert allowed(self.document(), "ec2:CreateTags", OTHER, {**IN_POOL, **keys})
        assert not allowed(self.document(), "ec2:CreateTags", OTHER, keys)
        other_group = {"aws:ResourceTag/aws:autoscaling:groupName": "web-asg", **keys}
        assert not allowed(self.document(), "ec2:CreateTags", OTHER, other_group)
        # Not the fleet's tag, which gates what Airflow may start, nor any other.
        for tag in ([FLEET_TAG], ["Name"], ["fleet:pool-project", FLEET_TAG]):
            assert not allowed(self.document(), "ec2:CreateTags", OTHER, {**IN_POOL, "aws:TagKeys": tag})
        assert not allowed(self.document(), "ec2:CreateTags", OTHER, IN_POOL)

    def test_only_the_claim_table(self):
        other = POOL_TABLE.replace("fleet-pool-claims", "payments")
        for verb in ("GetItem", "PutItem", "DeleteItem", "Scan", "BatchWriteItem"):
            assert not allowed(self.document(), f"dynamodb:{verb}", other)
        assert not allowed(self.document(), "dynamodb:DeleteTable", POOL_TABLE)

    def test_nothing_beyond_the_pool(self):
        for action in ("ec2:TerminateInstances", "ec2:StartInstances", "autoscaling:DeleteAutoScalingGroup"):
            assert not allowed(self.document(), action, OTHER, IN_POOL), action


class TestPoolInstancePolicyLimits:
    document = staticmethod(lambda: policy("pool-instance-policy.json"))

    def test_its_own_notice_only(self):
        notice = {**ON_ITSELF_IN_POOL, "aws:TagKeys": ["fleet:notice"]}
        assert allowed(self.document(), "ec2:CreateTags", SELF, notice)
        assert not allowed(self.document(), "ec2:CreateTags", OTHER, notice), "another instance"
        assert not allowed(
            self.document(), "ec2:CreateTags", SELF, {**notice, "ec2:SourceInstanceARN": OTHER}
        )
        outside = {**notice, "aws:ResourceTag/aws:autoscaling:groupName": "web-asg"}
        assert not allowed(self.document(), "ec2:CreateTags", SELF, outside), "not the pool's group"
        # Not the claim's tags: a machine must not hand itself to a project, or take itself back.
        for keys in (["fleet:pool-project"], ["fleet:notice", FLEET_TAG], ["Name"]):
            assert not allowed(self.document(), "ec2:CreateTags", SELF, {**notice, "aws:TagKeys": keys}), keys
        assert not allowed(self.document(), "ec2:CreateTags", SELF, ON_ITSELF_IN_POOL)
