"""The OpenAPI document of the v2 API, served without a token at ``/schema/openapi.json``.

Handlers read their bodies raw (``RawBody``) and decode them strictly themselves, so Litestar
cannot see what they accept. This module completes the generated document before it is served:

* request bodies: the msgspec struct each route decodes (``REQUEST_BODIES``), every PATCH as a
  JSON Patch array, any other body as a JSON object; routes without a body declare none;
* every operation lists the error statuses we answer with, all with the error body of §1.5;
* the ``X-Auth-Token`` header is the security scheme; public routes (A9, ping, health) need none;
* POSTs that keep their first response take an optional ``Idempotency-Key`` header.

Only the JSON API (``/`` and ``/v2/...``) is documented; the web console serves HTML.
"""

from __future__ import annotations

import copy
import importlib
import logging
import re
from typing import Any

import msgspec
from litestar import Litestar, Request, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.routes import HTTPRoute

from cloudbackup.api.idempotency import MAX_KEY_LENGTH, SECRET_BEARING

log = logging.getLogger("cloudbackup.api")

SCHEMA_PATH = "/schema"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
# Every error status the API answers with; each one carries an ErrorBody (spec §1.4, §1.5).
ERROR_STATUSES = {
    "400": "Bad input: malformed JSON, a field that breaks a rule, a bad query parameter.",
    "401": "X-Auth-Token missing, unknown, expired or revoked (A9: wrong agent credentials).",
    "403": "The token's roles do not allow this method, or a documented refusal.",
    "404": "Unknown id, or one of another project.",
    "405": "Method not allowed on this path.",
    "409": "The resource's state forbids the change (or the Idempotency-Key is in use).",
    "413": "Request body too large.",
    "422": "Idempotency-Key reused with a different request.",
    "431": "Request headers too large.",
    "501": "Operation not implemented.",
    "503": "A dependency (the database) is unreachable; see Retry-After.",
}
# (METHOD, path) -> "module:Struct" (in cloudbackup.api.schemas) the handler decodes. Imported
# lazily: a route whose struct is missing is documented with a generic JSON object instead.
REQUEST_BODIES: dict[tuple[str, str], str] = {
    ("POST", "/v2/{project_id}/backups"): "backups:StartBackup",
    ("POST", "/v2/{project_id}/agents"): "agents:RegisterAgent",
    ("POST", "/v2/{project_id}/agents/tokens"): "agents:AgentLoginIn",
    ("POST", "/v2/{project_id}/configurations"): "configurations:CreateConfiguration",
    ("POST", "/v2/{project_id}/restores"): "restores:StartRestore",
    ("POST", "/v2/{project_id}/cleanups"): "cleanups:StartCleanup",
    ("POST", "/v2/{project_id}/backups/{backup_id}/browse-requests"): "browse:BrowseBackup",
    ("POST", "/v2/{project_id}/agents/{agent_id}/browse-requests"): "browse:BrowseHost",
    ("POST", "/v2/{project_id}/events"): "event_requests:ActivateIn",
    ("POST", "/v2/{project_id}/agents/{agent_id}/events"): "event_requests:AgentEventIn",
    ("PUT", "/v2/{project_id}/settings/summaries"): "summaries:SummariesIn",
    ("POST", "/v2/{project_id}/agents/{agent_id}/vault"): "vault:MoveVaultIn",
    ("POST", "/v2/{project_id}/agents/{agent_id}/vault-encryption-requests"): "vault:EncryptionIn",
    (
        "POST",
        "/v2/{project_id}/agents/{agent_id}/vault-password-verification-requests",
    ): "vault:VerificationIn",
    ("PUT", "/v2/admin/agents/{agent_id}/roots"): "admin:RootsBody",
    (
        "PUT",
        "/v2/{project_id}/configurations/{configuration_id}/drill-schedule",
    ): "drill_schedules:DrillScheduleIn",
}
PATCH_TYPE = "common:PatchOperation"
# Health reports (H1, H2) answer 503 with the same document as their 200 when a dependency is
# down (spec §12).
REPORT_ON_503 = frozenset({"/v2/{project_id}/health", "/v2/{project_id}/health/{dependent_system}"})
_PREFIX = "Request"  # request structs get their own component names: no clash with responses
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Retrying a POST with the same key returns the first response again.",
    "schema": {"type": "string", "pattern": f"^[ -~]{{1,{MAX_KEY_LENGTH}}}$"},
}

ERROR_BODY = {
    "type": "object",
    "properties": {
        "message": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["message"],
}


def _resolve(target: str) -> type | None:
    module, _, name = target.partition(":")
    try:
        found: type = getattr(importlib.import_module(f"cloudbackup.api.schemas.{module}"), name)
    except (ImportError, AttributeError):
        log.warning("OpenAPI: request body type %s not found; documented as an object", target)
        return None
    return found


def _handlers(app: Litestar) -> dict[tuple[str, str], Any]:
    found: dict[tuple[str, str], Any] = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                for method in handler.http_methods:
                    found[(method, route.path_format)] = handler
    return found


def _json_body(media_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {media_type: {"schema": schema}}}


def describe(schema: dict[str, Any], app: Litestar) -> dict[str, Any]:
    """Complete Litestar's document (``schema``) with what only our handlers know."""
    doc = copy.deepcopy(schema)
    handlers = _handlers(app)
    structs: dict[tuple[str, str], type] = {}
    for key, target in REQUEST_BODIES.items():
        if (found := _resolve(target)) is not None:
            structs[key] = found
    patch = _resolve(PATCH_TYPE)
    types: list[Any] = [*structs.values(), *([list.__class_getitem__(patch)] if patch else [])]
    generated, components = msgspec.json.schema_components(
        types, ref_template=f"#/components/schemas/{_PREFIX}{{name}}"
    )
    body_schema = dict(zip([*structs.keys(), ("PATCH", "*")], generated, strict=False))

    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update({f"{_PREFIX}{name}": value for name, value in components.items()})
    schemas["ErrorBody"] = ERROR_BODY
    doc["components"]["securitySchemes"] = {
        "XAuthToken": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}
    }
    doc["security"] = [{"XAuthToken": []}]
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}

    paths: dict[str, Any] = {}
    for path, item in doc.get("paths", {}).items():
        if path != "/" and not path.startswith("/v2/"):
            continue
        paths[path] = item
        for method in METHODS:
            operation = item.get(method)
            handler = handlers.get((method.upper(), path))
            if operation is None or handler is None:
                continue
            _complete_operation(operation, method, path, handler, body_schema, error_ref)
    doc["paths"] = paths
    return doc


def _complete_operation(
    operation: dict[str, Any],
    method: str,
    path: str,
    handler: Any,
    body_schema: dict[tuple[str, str], Any],
    error_ref: dict[str, str],
) -> None:
    """One operation: its path parameters, security, request body, Idempotency-Key and error
    responses."""
    _declare_path_parameters(operation, path)
    if handler.opt.get("public"):
        operation["security"] = []
    operation.pop("requestBody", None)
    if "body" in handler.parsed_fn_signature.parameters:
        if method == "patch" and ("PATCH", "*") in body_schema:
            operation["requestBody"] = _json_body(
                "application/json-patch+json", body_schema[("PATCH", "*")]
            )
        else:
            known = body_schema.get((method.upper(), path), {"type": "object"})
            operation["requestBody"] = _json_body("application/json", known)
    if method == "post" and path.startswith("/v2/{project_id}"):
        suffix = path[len("/v2/{project_id}") :]
        if suffix not in SECRET_BEARING and not handler.opt.get("public"):
            operation.setdefault("parameters", []).append(dict(IDEMPOTENCY_KEY))
    responses = operation.setdefault("responses", {})
    for status, text in ERROR_STATUSES.items():
        responses[status] = {
            "description": text,
            "content": {"application/json": {"schema": dict(error_ref)}},
        }
    if path in REPORT_ON_503 and "200" in responses:
        report = responses["200"]["content"]["application/json"]["schema"]
        responses["503"]["content"]["application/json"]["schema"] = {"anyOf": [error_ref, report]}


STRING = {"type": "string"}


def _declare_path_parameters(operation: dict[str, Any], path: str) -> None:
    """Every ``{name}`` of ``path`` as a required string parameter: Litestar lists only those a
    handler or one of its dependencies reads (``ping`` reads none; ``call`` reads the project)."""
    parameters = operation.setdefault("parameters", [])
    declared = {p["name"] for p in parameters if p.get("in") == "path"}
    missing = [name for name in re.findall(r"{(\w+)}", path) if name not in declared]
    parameters[:0] = [
        {"name": name, "in": "path", "required": True, "deprecated": False, "schema": STRING}
        for name in missing
    ]
    if not parameters:
        del operation["parameters"]


class _DescribedJson(JsonRenderPlugin):
    """Serves the completed document; built once per app (routes do not change at run time)."""

    def __init__(self) -> None:
        super().__init__()
        self._rendered: bytes | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._rendered is None:
            self._rendered = msgspec.json.encode(describe(openapi_schema, request.app))
        return self._rendered


def openapi_config() -> OpenAPIConfig:
    """The app's OpenAPI configuration: JSON only, public (no token)."""
    return OpenAPIConfig(
        title="cloudbackup: Cloud Backup v2 API",
        version="2.0",
        path=SCHEMA_PATH,
        render_plugins=[_DescribedJson()],
        openapi_router=Router(
            SCHEMA_PATH, route_handlers=[], include_in_schema=False, opt={"public": True}
        ),
    )
