"""Is an instance ready for a project: code-server's ``/healthz`` answering 2xx, or a port open.

The URL comes from the pool config with the instance's facts filled in
(``http://{private_ip}:8080/healthz``); checks of many instances run side by side, each bounded by
the config's timeout, so one reconcile's checks take about one timeout however many are slow.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from operators.pool_config import ReadinessConfig
from operators.pool_view import Machine

_MAX_PARALLEL = 32


def readiness_url(config: ReadinessConfig, machine: Machine) -> str | None:
    """The machine's check URL, or None when it lacks the address the URL names (not booted yet)."""
    facts = {
        "instance_id": machine.instance_id,
        "private_ip": machine.private_ip,
        "public_ip": machine.public_ip,
    }
    try:
        return config.url.format_map({key: value for key, value in facts.items() if value})
    except KeyError:
        return None


def is_ready(config: ReadinessConfig, machine: Machine) -> bool:
    url = readiness_url(config, machine)
    if url is None:
        return False
    timeout = config.timeout.total_seconds()
    parts = urlsplit(url)
    try:
        if parts.scheme == "tcp":
            with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
                return True
        # No proxy: the check is about the instance itself, and the URL is not user input.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(urllib.request.Request(url, method="GET"), timeout=timeout) as response:
            return 200 <= response.status < 300
    except (OSError, urllib.error.URLError, ValueError):
        return False


def check_readiness(config: ReadinessConfig, machines: Iterable[Machine]) -> dict[str, bool]:
    """``{instance_id: ready}`` of the running machines given, checked side by side."""
    running = [m for m in machines if m.state == "running"]
    if not running:
        return {}
    with ThreadPoolExecutor(max_workers=min(_MAX_PARALLEL, len(running))) as pool:
        results = pool.map(lambda m: is_ready(config, m), running)
        return {m.instance_id: ok for m, ok in zip(running, results, strict=True)}
