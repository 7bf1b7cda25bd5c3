"""A small IMDSv2 client: session token, instance identity and interruption notices.

The token is refreshed a little before it expires and whenever a call answers 401; proxies are
never used (IMDS is link-local); 404 reads as ``None``. The endpoint honours botocore's
``AWS_EC2_METADATA_SERVICE_ENDPOINT[_MODE]`` and ``AWS_EC2_METADATA_DISABLED``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, Callable

DEFAULT_ENDPOINT = "http://169.254.169.254"
DEFAULT_ENDPOINT_IPV6 = "http://[fd00:ec2::254]"
TOKEN_PATH = "/latest/api/token"
INSTANCE_ID_PATH = "/latest/meta-data/instance-id"
REGION_PATH = "/latest/meta-data/placement/region"
SPOT_ACTION_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"

DEFAULT_TOKEN_TTL = 21600  # seconds; the IMDS maximum
DEFAULT_TIMEOUT = 2.0


class ImdsError(Exception):
    """IMDS did not answer usefully (disabled, unreachable, timed out, or an HTTP error)."""


def endpoint_from_env(env: Mapping[str, str]) -> str:
    endpoint = env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
    if endpoint:
        return endpoint.rstrip("/")
    if env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "").lower() == "ipv6":
        return DEFAULT_ENDPOINT_IPV6
    return DEFAULT_ENDPOINT


class ImdsClient:
    def __init__(
        self,
        endpoint: str | None = None,
        *,
        token_ttl: int = DEFAULT_TOKEN_TTL,
        timeout: float = DEFAULT_TIMEOUT,
        monotonic: Callable[[], float] | None = None,
        env: Mapping[str, str] | None = None,
    ):
        env = os.environ if env is None else env
        self.endpoint = (endpoint or endpoint_from_env(env)).rstrip("/")
        self.disabled = env.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true"
        self.token_ttl = int(token_ttl)
        self.timeout = timeout
        self._monotonic = monotonic or time.monotonic
        self._token: str | None = None
        self._token_expires = 0.0
        self._lock = threading.Lock()  # the reporter thread may ask for the region meanwhile
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def instance_id(self) -> str:
        return self._text(INSTANCE_ID_PATH, "no instance id")

    def region(self) -> str:
        return self._text(REGION_PATH, "no region")

    def spot_instance_action(self) -> dict[str, Any] | None:
        """``{"action": "stop"|"terminate"|"hibernate", "time": ...}`` or ``None``."""
        return self._json(SPOT_ACTION_PATH)

    def rebalance_recommendation(self) -> dict[str, Any] | None:
        """``{"noticeTime": ...}`` or ``None``."""
        return self._json(REBALANCE_PATH)

    def get(self, path: str) -> str | None:
        """The body of ``GET path`` (``None`` on 404). One new token and retry on a 401."""
        if self.disabled:
            raise ImdsError("IMDS is disabled (AWS_EC2_METADATA_DISABLED=true)")
        with self._lock:
            for attempt in (1, 2):
                token = self._current_token()
                status, body = self._request("GET", path, {"X-aws-ec2-metadata-token": token})
                if status == 200:
                    return body
                if status == 404:
                    return None
                if status == 401 and attempt == 1:
                    self._token = None  # expired or revoked early: fetch a new one
                    continue
                raise ImdsError(f"{self.endpoint}{path}: HTTP {status}")
        raise AssertionError("unreachable")

    def _text(self, path: str, missing: str) -> str:
        value = self.get(path)
        if not value:
            raise ImdsError(f"{self.endpoint}{path}: {missing}")
        return value.strip()

    def _json(self, path: str) -> dict[str, Any] | None:
        body = self.get(path)
        if body is None:
            return None
        try:
            value = json.loads(body)
        except ValueError:
            return {"raw": body}
        return value if isinstance(value, dict) else {"raw": value}

    def _current_token(self) -> str:
        now = self._monotonic()
        # Refresh before expiry: a quarter of the TTL early, at most a minute early.
        margin = min(60.0, self.token_ttl / 4)
        if self._token is None or now >= self._token_expires - margin:
            status, body = self._request(
                "PUT", TOKEN_PATH, {"X-aws-ec2-metadata-token-ttl-seconds": str(self.token_ttl)}
            )
            if status != 200 or not body:
                raise ImdsError(f"{self.endpoint}{TOKEN_PATH}: token request answered HTTP {status}")
            self._token = body.strip()
            self._token_expires = now + self.token_ttl
        return self._token

    def _request(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
        request = urllib.request.Request(self.endpoint + path, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.status, response.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as error:
            error.close()
            return error.code, ""
        except (urllib.error.URLError, socket.timeout, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ImdsError(f"{self.endpoint}{path}: {reason}") from None
