"""The pool's test world: a moto Auto Scaling group and claim table, and readiness answered over
real HTTP by a stand-in for code-server that the test tells which instances are up."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

from fleet_sim.groups import create_pool

GROUP = "vscode-asg"
TABLE = "fleet-pool-claims"


class CodeServers:
    """``GET /<instance id>/healthz``: 200 for the instances in ``ready``, else 503."""

    def __init__(self) -> None:
        self.ready: set[str] = set()
        self.requests = 0
        servers = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                servers.requests += 1
                instance_id = self.path.strip("/").split("/")[0]
                self.send_response(200 if instance_id in servers.ready else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{{instance_id}}/healthz"

    def stop(self) -> None:
        self._server.shutdown()


def make_group(desired: int = 0, max_size: int = 20, min_size: int = 0) -> None:
    create_pool(
        boto3.client("ec2"),
        boto3.client("autoscaling"),
        boto3.client("dynamodb"),
        GROUP,
        TABLE,
        desired=desired,
        max_size=max_size,
        min_size=min_size,
    )


def group() -> dict:
    return boto3.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
        "AutoScalingGroups"
    ][0]


def member_ids() -> list[str]:
    return sorted(i["InstanceId"] for i in group()["Instances"])
