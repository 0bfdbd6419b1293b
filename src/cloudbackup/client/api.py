"""The Cloud Backup v2 calls the CLI and the web console make, written once.

``Endpoints`` builds each request (path, query, body) and leaves sending to a subclass:
``ApiClient`` sends with a blocking ``httpx.Client`` (the CLI), ``AsyncApiClient`` with an
``httpx.AsyncClient`` (the console, which calls the API in-process). Every answer that is not 2xx
becomes an :class:`ApiError` carrying the status and the API's ``message``/``errors``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

R = TypeVar("R")
JSON = "application/json"
JSON_PATCH = "application/json-patch+json"
FINAL_STATES = frozenset(
    {"completed", "completed_with_errors", "failed", "stopped", "skipped", "missed"}
)


class ApiError(Exception):
    """The API answered with an error status; ``message``/``errors`` are its JSON body."""

    def __init__(self, status: int, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = list(errors or [])

    def one_line(self) -> str:
        """``HTTP 400: Validation failed. (a; b)``: what the CLI prints, on one line."""
        detail = f" ({'; '.join(self.errors)})" if self.errors else ""
        return f"HTTP {self.status}: {self.message}{detail}"

    @property
    def missing_endpoint(self) -> bool:
        """True when the server does not offer the operation (yet): 404 route, 405 or 501."""
        return self.status in (405, 501) or (self.status == 404 and self.message == "Not found.")


class Unreachable(Exception):
    """No HTTP answer at all (connection refused, DNS, timeout)."""


def decode(response: httpx.Response) -> Any:
    """The JSON body of a 2xx answer (``None`` for 204), else raise :class:`ApiError`."""
    if response.is_success:
        if response.status_code == 204 or not response.content:
            return None
        return response.json()
    message, errors = response.reason_phrase or "Request failed.", []
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        message = body["message"]
        errors = [str(e) for e in body.get("errors") or []]
    elif response.text.strip():
        message = response.text.strip().splitlines()[0][:200]
    raise ApiError(response.status_code, message, errors)


def _seg(value: str) -> str:
    # Ids come from users: quote them so "../x" or "a?b" stay one path segment.
    return quote(value, safe="")


def _query(**params: object) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


class Endpoints(Generic[R]):
    """One method per operation; ``R`` is what a call returns (a value, or an awaitable)."""

    def __init__(self, base_url: str, project: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.project = project
        self.token = token

    def url(self, *parts: str, scoped: bool = True) -> str:
        """``/v2/{project}/<parts>``, or ``/v2/<parts>`` when not ``scoped`` (admin routes)."""
        scope = [_seg(self.project)] if scoped else []
        return "/".join([self.base_url, "v2", *scope, *(_seg(p) for p in parts)])

    def headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"X-Auth-Token": self.token, "Accept": JSON}
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _send(
        self,
        method: str,
        parts: tuple[str, ...],
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str | None = None,
        scoped: bool = True,
    ) -> R:
        """One call: the URL, query, JSON body and headers, handed to :meth:`_transmit`."""
        return self._transmit(
            {
                "method": method,
                "url": self.url(*parts, scoped=scoped),
                "params": dict(params or {}),
                "content": None if body is None else json.dumps(body),
                "headers": self.headers(content_type),
            }
        )

    def _transmit(self, request: dict[str, Any]) -> R:
        """Send ``request`` (``httpx`` request arguments) and decode the answer."""
        raise NotImplementedError

    def unreachable(self, exc: httpx.TransportError) -> Unreachable:
        return Unreachable(f"cannot reach {self.base_url}: {exc}")

    def _get(self, *parts: str, **params: object) -> R:
        return self._send("GET", parts, params=_query(**params))

    def _post(self, body: object, *parts: str) -> R:
        return self._send("POST", parts, body=body, content_type=JSON)

    def _patch(self, operations: list[dict[str, Any]], *parts: str) -> R:
        return self._send("PATCH", parts, body=operations, content_type=JSON_PATCH)

    # -- agents (A2, A3) ------------------------------------------------------------------------
    def list_agents(self) -> R:
        return self._get("agents")

    def get_agent(self, agent_id: str) -> R:
        return self._get("agents", agent_id)

    def register_agent(self, body: Mapping[str, Any]) -> R:
        return self._post(dict(body), "agents")

    # -- configurations (CF1-CF5) --------------------------------------------------------------
    def list_configurations(self) -> R:
        return self._get("configurations")

    def get_configuration(self, configuration_id: str) -> R:
        return self._get("configurations", configuration_id)

    def create_configuration(self, body: Mapping[str, Any]) -> R:
        return self._post(dict(body), "configurations")

    def update_configuration(self, configuration_id: str, changes: Mapping[str, Any]) -> R:
        """CF4 with one ``replace`` per changed path (``{"/name": "x", "/enabled": False}``)."""
        ops = [{"op": "replace", "path": path, "value": value} for path, value in changes.items()]
        return self._patch(ops, "configurations", configuration_id)

    def delete_configuration(self, configuration_id: str) -> R:
        return self._send("DELETE", ("configurations", configuration_id))

    # -- backups (B1-B4, ER1, EV5) -------------------------------------------------------------
    def list_backups(
        self,
        *,
        marker: str | None = None,
        limit: int | None = None,
        sort_dir: str | None = None,
        configuration_id: str | None = None,
        restorable: bool | None = None,
    ) -> R:
        return self._get(
            "backups",
            marker=marker,
            limit=limit,
            sort_dir=sort_dir,
            configuration_id=configuration_id,
            restorable=restorable,
        )

    def get_backup(self, backup_id: str) -> R:
        return self._get("backups", backup_id)

    def start_backup(self, configuration_id: str) -> R:
        return self._post(
            {"configuration_id": configuration_id, "state": "start_requested"}, "backups"
        )

    def stop_run(self, kind: str, run_id: str) -> R:
        """B4/R4/C4 asking the run of ``kind`` ("backups", "restores", ...) to stop."""
        stop = [{"op": "replace", "path": "/state", "value": "stop_requested"}]
        return self._patch(stop, kind, run_id)

    def stop_backup(self, backup_id: str) -> R:
        return self.stop_run("backups", backup_id)

    def backup_errors(self, backup_id: str) -> R:
        return self._get("backups", backup_id, "errors")

    def backup_drills(self, backup_id: str, *, limit: int | None = None) -> R:
        """The backup's restore drills, newest first (an API extension, issue 14)."""
        return self._get("backups", backup_id, "drills", limit=limit)

    def drill_schedule(self, configuration_id: str) -> R:
        """The configuration's drill schedule and last drill (an API extension, issue 14)."""
        return self._get("configurations", configuration_id, "drill-schedule")

    # -- restores (R1-R4, ER2) -----------------------------------------------------------------
    def list_restores(
        self, *, marker: str | None = None, limit: int | None = None, sort_dir: str | None = None
    ) -> R:
        return self._get("restores", marker=marker, limit=limit, sort_dir=sort_dir)

    def get_restore(self, restore_id: str) -> R:
        return self._get("restores", restore_id)

    def start_restore(self, body: Mapping[str, Any]) -> R:
        return self._post(dict(body), "restores")

    def stop_restore(self, restore_id: str) -> R:
        return self.stop_run("restores", restore_id)

    def restore_errors(self, restore_id: str) -> R:
        return self._get("restores", restore_id, "errors")

    # -- events (EV2, EV4-EV8) -----------------------------------------------------------------
    def list_events(
        self,
        owner: tuple[str, str] | None = None,
        *,
        marker: str | None = None,
        limit: int | None = None,
        sort_dir: str | None = None,
    ) -> R:
        """The project stream, or the events of ``owner`` = (``"backups"``, id) and the like."""
        parts = (*owner, "events") if owner else ("events",)
        return self._get(*parts, marker=marker, limit=limit, sort_dir=sort_dir)

    # -- queue administration: /v2/admin, outside any project (operator tokens only) ----------
    def list_queues(self) -> R:
        return self._send("GET", ("admin", "queues"), scoped=False)

    def update_queue(self, name: str, changes: Mapping[str, Any]) -> R:
        ops = [{"op": "replace", "path": path, "value": value} for path, value in changes.items()]
        return self._send(
            "PATCH", ("admin", "queues", name), body=ops, content_type=JSON_PATCH, scoped=False
        )


def restore_body(
    backup_id: str,
    destination_agent_id: str,
    destination_path: str | None,
    *,
    overwrite: bool = False,
    inclusions: list[dict[str, str]] | None = None,
    exclusions: list[dict[str, str]] | None = None,
    encrypted_password_hex: str | None = None,
) -> dict[str, Any]:
    """An R1 body; every key the spec marks required is present."""
    return {
        "backup_id": backup_id,
        "destination_agent_id": destination_agent_id,
        "destination_path": destination_path,
        "overwrite_files": overwrite,
        "encrypted_password_hex": encrypted_password_hex,
        "inclusions": inclusions or [],
        "exclusions": exclusions or [],
    }


class ApiClient(Endpoints[Any]):
    """Blocking client (the CLI). ``http`` may be any ``httpx.Client``, e.g. a test client."""

    def __init__(self, http: httpx.Client, base_url: str, project: str, token: str) -> None:
        super().__init__(base_url, project, token)
        self.http = http

    def _transmit(self, request: dict[str, Any]) -> Any:
        try:
            response = self.http.request(**request)
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc
        return decode(response)


class AsyncApiClient(Endpoints[Awaitable[Any]]):
    """Non-blocking client (the console)."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, project: str, token: str) -> None:
        super().__init__(base_url, project, token)
        self.http = http

    async def _transmit(self, request: dict[str, Any]) -> Any:
        try:
            response = await self.http.request(**request)
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc
        return decode(response)
