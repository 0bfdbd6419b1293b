"""The agent's session with the API: its token from A9, renewed before it expires, on one
``httpx.Client`` shared by every thread of the agent."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any

import httpx

from cloudbackup.agent.state import AgentIdentity

log = logging.getLogger("cloudbackup.agent")

# Renew when less than this share of the token's lifetime is left (and at most this early).
RENEW_SHARE = 0.2
RENEW_AT_MOST_SECONDS = 600.0
TRANSIENT = (500, 502, 503, 504)


class ApiRefused(Exception):
    """The API answered a request with an error status."""

    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        try:
            self.message = str(response.json().get("message", ""))
        except ValueError:
            self.message = response.text[:200]
        super().__init__(
            f"{response.request.method} {response.request.url.path}: {self.status} {self.message}"
        )


class AgentSession:
    """Requests as the agent: ``X-Auth-Token`` from A9, renewed on expiry or a 401."""

    def __init__(self, identity: AgentIdentity, client: httpx.Client | None = None) -> None:
        self.identity = identity
        self.client = client or httpx.Client(
            base_url=identity.url, timeout=httpx.Timeout(30.0, read=90.0)
        )
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = threading.Lock()

    def path(self, *parts: str) -> str:
        return "/".join(("", "v2", self.identity.project_id, *parts))

    def agent_path(self, *parts: str) -> str:
        return self.path("agents", self.identity.agent_id, *parts)

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._login()
            assert self._token is not None
            return self._token

    def _login(self) -> None:
        me = self.identity
        body = {
            "project_id": me.project_id,
            "id": me.agent_id,
            "password": me.password,
            "name": me.name,
            "version": me.version,
            "host": {"os": me.os, "fingerprint": me.fingerprint, "addresses": me.addresses},
        }
        response = self.client.post(self.path("agents", "tokens"), json=body)
        if response.status_code != 200:
            raise ApiRefused(response)
        token = response.json()["token"]
        expires = datetime.fromisoformat(str(token["expires"]).replace("Z", "+00:00"))
        lifetime = max(expires.timestamp() - time.time(), 0.0)
        self._token = str(token["id"])
        self._renew_at = (
            time.monotonic() + lifetime - min(lifetime * RENEW_SHARE, RENEW_AT_MOST_SECONDS)
        )
        log.info("agent %s has a token until %s", me.agent_id, token["expires"])

    def request(self, method: str, path: str, *, retries: int = 3, **kwargs: Any) -> httpx.Response:
        """Send as the agent; a 401 renews the token once, a transient failure is retried."""
        headers = dict(kwargs.pop("headers", None) or {})
        renewed = False
        for attempt in range(retries + 1):
            headers["X-Auth-Token"] = self.token()
            try:
                response = self.client.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError:
                if attempt == retries:
                    raise
                time.sleep(min(0.2 * 2**attempt, 2.0))
                continue
            if response.status_code == 401 and not renewed:
                with self._lock:
                    self._token = None
                renewed = True
                continue
            if response.status_code in TRANSIENT and attempt < retries:
                time.sleep(min(0.2 * 2**attempt, 2.0))
                continue
            return response
        return response

    def checked(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """:meth:`request`, raising :class:`ApiRefused` unless the answer is a 2xx."""
        response = self.request(method, path, **kwargs)
        if not response.is_success:
            raise ApiRefused(response)
        return response

    def close(self) -> None:
        self.client.close()
