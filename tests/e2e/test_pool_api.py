"""The warm pool's HTTP API in Airflow's real API server (two of them), on the fleet simulator.

Airflow's SimpleAuthManager with two users: ``admin`` (may edit the fleet_pool DAG) and
``viewer`` (may read it). The pool's instances are an Auto Scaling group on the simulator, their
code-server a stand-in over HTTP that the test tells which instances are up.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest
from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
from fleet_testing import wait_for
from operators.pool_view import TAG_PROJECT
from pool_testing import GROUP, TABLE, CodeServers, make_group, member_ids

from airflow_harness import AirflowComponents
from airflow_harness.components import _free_port, _signal_group
from fleet_sim import FleetSimulator

REPO = Path(__file__).resolve().parents[2]
PASSWORDS = {"admin": "admin", "viewer": secrets.token_hex(8)}


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    work = tmp_path_factory.mktemp("pool")
    servers = CodeServers()
    with pytest.MonkeyPatch.context() as monkeypatch, FleetSimulator(roles=[], workdir=work / "sim") as sim:
        monkeypatch.setenv("AWS_ENDPOINT_URL", sim.endpoint_url)
        make_group(desired=10, max_size=40)
        servers.ready.update(member_ids())
        config = work / "pool.yaml"
        config.write_text(
            json.dumps(
                {"group": GROUP, "claim_table": TABLE, "max_size": 40, "readiness": {"url": servers.url}}
            )
        )
        passwords = work / "passwords.json"
        passwords.write_text(json.dumps(PASSWORDS))
        env = {
            "FLEET_POOL_CONFIG": str(config),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            # Both API servers sign and accept the same tokens.
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        }
        components = AirflowComponents(
            work / "airflow",
            fleet_config=REPO / "dags" / "fleet.yaml",
            aws_connection=sim.airflow_connection(),
            extra_env=env,
        )
        with components:
            # The API asks for a reconcile through the DAG's asset: once the DAG is parsed.
            wait_for(lambda: components.api("GET", "/api/v2/assets", uri_pattern="fleet-pool")["assets"], 120)
            second = _second_api_server(components)
            try:
                yield sim, [components.api_url, second[0]], second[1], servers
            finally:
                if second[1].poll() is None:
                    _signal_group(second[1], 15)
                    second[1].wait(20)
    servers.stop()


def _second_api_server(components: AirflowComponents) -> tuple[str, subprocess.Popen[bytes]]:
    port = _free_port()
    env = {**components.environment(), "AIRFLOW__API__PORT": str(port)}
    with open(components.home / "api-server-2.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server"],
            env=env,
            cwd=components.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                return url, process
        except httpx.TransportError:
            pass
        threading.Event().wait(1)
    raise AssertionError("the second API server did not start")


def token(url: str, user: str) -> dict[str, str]:
    answer = httpx.post(f"{url}/auth/token", json={"username": user, "password": PASSWORDS[user]}, timeout=30)
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_anonymous_401_viewer_reads_only(pool):
    _, (url, _), _, _ = pool
    assert httpx.get(f"{url}/pool/status", timeout=30).status_code == 401
    viewer = token(url, "viewer")
    status = httpx.get(f"{url}/pool/status", headers=viewer, timeout=30)
    assert status.status_code == 200 and status.json()["total"] == 10
    denied = httpx.post(f"{url}/pool/allocations", json={"project_id": "p"}, headers=viewer, timeout=30)
    assert denied.status_code == 403
    assert httpx.get(f"{url}/pool/some-project", headers=viewer, timeout=30).status_code == 403
    # The UI's session: the same JWT in Airflow's `_token` cookie; a forged one is nobody.
    session = {COOKIE_NAME_JWT_TOKEN: viewer["Authorization"].removeprefix("Bearer ")}
    assert httpx.get(f"{url}/pool/status", cookies=session, timeout=30).status_code == 200
    assert (
        httpx.post(
            f"{url}/pool/allocations", json={"project_id": "p"}, cookies=session, timeout=30
        ).status_code
        == 403
    )
    forged = {COOKIE_NAME_JWT_TOKEN: session[COOKIE_NAME_JWT_TOKEN][:-4] + "AAAA"}
    refused = httpx.get(f"{url}/pool/status", cookies=forged, timeout=30).status_code
    core = httpx.get(f"{url}/api/v2/dags/fleet_pool", cookies=forged, timeout=30).status_code
    assert refused == core == 403  # as Airflow's own API answers a token it cannot verify


def test_bad_input_is_422_naming_the_field(pool):
    _, (url, _), _, _ = pool
    admin = token(url, "admin")
    bad_id = httpx.post(f"{url}/pool/allocations", json={"project_id": "a b"}, headers=admin, timeout=30)
    assert bad_id.status_code == 422 and "project_id" in bad_id.text
    unknown = httpx.post(
        f"{url}/pool/allocations", json={"project_id": "ok", "size": 3}, headers=admin, timeout=30
    )
    assert unknown.status_code == 422 and "size" in unknown.text
    not_json = httpx.post(f"{url}/pool/allocations", content=b"{", headers=admin, timeout=30)
    assert not_json.status_code == 422


def test_fifty_projects_on_two_api_servers_against_ten_ready(pool):
    _, urls, _, _ = pool
    headers = [token(url, "admin") for url in urls]
    answers: dict[str, httpx.Response] = {}
    start = threading.Barrier(50)

    def allocate(n: int) -> None:
        url, auth = urls[n % 2], headers[n % 2]
        start.wait()
        answers[f"race-{n}"] = httpx.post(
            f"{url}/pool/allocations", json={"project_id": f"race-{n}"}, headers=auth, timeout=120
        )

    threads = [threading.Thread(target=allocate, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    codes = Counter(answer.status_code for answer in answers.values())
    assert codes == {201: 10, 503: 40}, codes
    won = {
        project: answer.json()["instance_id"]
        for project, answer in answers.items()
        if answer.status_code == 201
    }
    assert len(set(won.values())) == 10
    assert all(answer.headers["Retry-After"] for answer in answers.values() if answer.status_code == 503)
    status = httpx.get(f"{urls[1]}/pool/status", headers=headers[1], timeout=30).json()
    assert {m["id"]: m["project"] for m in status["machines"] if m["project"]} == {
        i: p for p, i in won.items()
    }
    # The reference's routes: the same allocation back as {ip, projectId}, and its status keys.
    project, instance = next(iter(won.items()))
    again = httpx.get(f"{urls[0]}/pool/{project}", headers=headers[0], timeout=30).json()
    assert set(again) == {"ip", "projectId"} and again["projectId"] == project
    assert (status["totalMachines"], status["usedMachines"]) == (status["total"], 10)
    # Destroy: outside the group nothing happens; inside, the instance goes.
    outside = httpx.post(
        f"{urls[0]}/pool/destroy", json={"machineId": "i-0123456789abcdef0"}, headers=headers[0], timeout=30
    )
    assert outside.status_code == 404 and "i-0123456789abcdef0" in outside.text
    gone = httpx.delete(f"{urls[1]}/pool/allocations/{project}", headers=headers[1], timeout=60)
    assert gone.status_code == 200 and gone.json()["instance_id"] == instance
    assert (
        httpx.get(f"{urls[0]}/pool/allocations/{project}", headers=headers[0], timeout=30).status_code == 404
    )


def test_the_api_server_killed_between_claim_and_reply(pool):
    """The claim is written, the server dies before it answers: the client's retry, on the other
    server, gets the same instance back, and the claim is whole (both items, then the tags)."""
    sim, (url, second_url), second, servers = pool
    headers = token(url, "admin")
    autoscaling, dynamodb = sim.client("autoscaling"), sim.client("dynamodb")

    def free_in_service() -> list[str]:
        claimed = {
            m["id"]
            for m in httpx.get(f"{url}/pool/status", headers=headers, timeout=30).json()["machines"]
            if m["project"]
        }
        members = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
            "AutoScalingGroups"
        ][0]["Instances"]
        return [
            m["InstanceId"]
            for m in members
            if m["LifecycleState"] == "InService" and m["InstanceId"] not in claimed
        ]

    if not free_in_service():
        desired = len(member_ids()) + 1
        autoscaling.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=desired)
    wait_for(free_in_service, 60, interval=1)
    servers.ready.update(member_ids())
    sim.inject({"kind": "slow_reply", "operation": "TransactWriteItems", "seconds": 60})
    lost: list[BaseException] = []

    def allocate() -> None:
        try:
            httpx.post(
                f"{second_url}/pool/allocations",
                json={"project_id": "killed"},
                headers=token(second_url, "admin"),
                timeout=90,
            )
        except httpx.TransportError as error:
            lost.append(error)

    caller = threading.Thread(target=allocate)
    caller.start()

    def committed() -> list[dict]:
        return [
            call
            for call in sim.api_calls()
            if call["operation"] == "TransactWriteItems" and "project#killed" in json.dumps(call["params"])
        ]

    claim = wait_for(committed, 60)[0]
    assert claim["status"] == 200
    _signal_group(second, 9)  # SIGKILL: no handler, no cleanup
    second.wait(20)
    caller.join(30)
    assert lost, "the killed server's client must see its connection drop"

    retry = httpx.post(f"{url}/pool/allocations", json={"project_id": "killed"}, headers=headers, timeout=60)

    assert retry.status_code == 200, retry.text  # 200: it already had one
    instance = retry.json()["instance_id"]
    items = {i["pk"]["S"]: i for i in dynamodb.scan(TableName=TABLE)["Items"]}
    assert items["project#killed"]["instance_id"]["S"] == instance
    assert items[f"instance#{instance}"]["project"]["S"] == "killed"
    tags = {
        t["Key"]: t["Value"]
        for t in sim.client("ec2").describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][
            0
        ]["Tags"]
    }
    assert tags[TAG_PROJECT] == "killed"
    assert [c for c in committed() if c["status"] == 200] == [claim]  # the retry wrote no second claim
