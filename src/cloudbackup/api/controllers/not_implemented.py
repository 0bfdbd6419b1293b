"""Every operation of the spec's index (§1.9) is routed: what no controller serves answers 501
with a JSON body saying so, never a 404 or 405 that would look like a wrong URL.

:data:`OPERATIONS` is the index itself; :func:`register_not_implemented` adds a 501 route for
each operation the app does not serve yet, so an operation stops being 501 simply by being built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from litestar import HttpMethod, Litestar, Request, Response, route
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_501_NOT_IMPLEMENTED

from cloudbackup.api.errors import error_response
from cloudbackup.api.schemas.common import ErrorBody


@dataclass(frozen=True, slots=True)
class Operation:
    id: str
    method: str
    path: str  # relative to /v2/{project_id}, with the spec's parameter names


# Spec §1.9, in its order: 61 operations.
OPERATIONS: tuple[Operation, ...] = tuple(
    Operation(*row.split())
    for row in """
B1 POST /backups
B2 GET /backups
B3 GET /backups/{backup_id}
B4 PATCH /backups/{backup_id}
B5 POST /backups/{backup_id}/browse-requests
B6 GET /backups/{backup_id}/browse-requests/{request_id}
R1 POST /restores
R2 GET /restores
R3 GET /restores/{restore_id}
R4 PATCH /restores/{restore_id}
C1 POST /cleanups
C2 GET /cleanups
C3 GET /cleanups/{cleanup_id}
C4 PATCH /cleanups/{cleanup_id}
ER1 GET /backups/{backup_id}/errors
ER2 GET /restores/{restore_id}/errors
ER3 GET /cleanups/{cleanup_id}/errors
CF1 POST /configurations
CF2 GET /configurations
CF3 GET /configurations/{configuration_id}
CF4 PATCH /configurations/{configuration_id}
CF5 DELETE /configurations/{configuration_id}
A1 POST /agents
A2 GET /agents
A3 GET /agents/{agent_id}
A4 PATCH /agents/{agent_id}
A5 DELETE /agents/{agent_id}
A6 GET /agents/{agent_id}/status
A7 GET /agents/{agent_id}/configuration
A8 GET /agents/{agent_id}/configurations
A9 POST /agents/tokens
A10 POST /agents/{agent_id}/browse-requests
A11 GET /agents/{agent_id}/browse-requests/{request_id}
A12 POST /agents/{agent_id}/logfiles
A13 GET /agents/{agent_id}/logfiles
A14 GET /agents/{agent_id}/logfiles/{logfile_id}
A15 PATCH /agents/{agent_id}/logfiles/{logfile_id}
A16 DELETE /agents/{agent_id}/logfiles/{logfile_id}
V1 POST /agents/{agent_id}/vault
V2 POST /agents/{agent_id}/vault-encryption-requests
V3 POST /agents/{agent_id}/vault-encryption-requests/{request_id}
V4 GET /agents/{agent_id}/vault-encryption-requests/{request_id}
V5 POST /agents/{agent_id}/vault-password-verification-requests
V6 POST /agents/{agent_id}/vault-password-verification-requests/{request_id}
V7 GET /agents/{agent_id}/vault-password-verification-requests/{request_id}
EV1 POST /events
EV2 GET /events
EV3 POST /agents/{agent_id}/events
EV4 GET /agents/{agent_id}/events
EV5 GET /backups/{backup_id}/events
EV6 GET /restores/{restore_id}/events
EV7 GET /cleanups/{cleanup_id}/events
EV8 GET /configurations/{configuration_id}/events
AC1 GET /activities
AC2 GET /agents/{agent_id}/activities
AC3 GET /configurations/{configuration_id}/activities
H1 GET /health
H2 GET /health/{dependent_system}
H3 GET /ping
S1 PUT /settings/summaries
S2 GET /settings/summaries
""".strip().splitlines()
)
# Operations callable without a token: a missing operation keeps its public face.
PUBLIC_OPERATIONS = frozenset({"A9", "H1", "H2", "H3"})
_PARAMETER = re.compile(r"\{[^}]*\}")
# H2's dependency is a path of its own (``storage/database``, OQ-28).
_TYPE_OF = {"{dependent_system}": "path"}


def full_path(operation: Operation) -> str:
    return f"/v2/{{project_id}}{operation.path}"


def shape(path: str) -> str:
    """A route path with every parameter (named or typed) as ``{}``, for comparison."""
    return _PARAMETER.sub("{}", path.rstrip("/") or "/")


def handlers(app: Litestar) -> dict[tuple[str, str], HTTPRouteHandler]:
    """The handler of every (method, path shape) the app routes."""
    return {
        (method, shape(r.path)): handler
        for r in app.routes
        if isinstance(r, HTTPRoute)
        for handler in r.route_handlers
        for method in handler.http_methods
    }


def unserved(app: Litestar) -> list[Operation]:
    have = handlers(app)
    return [op for op in OPERATIONS if (op.method, shape(full_path(op))) not in have]


def working(app: Litestar) -> dict[str, bool]:
    """Operation id -> True when it is served by a handler that does the work, False when it
    answers 501 (a catch-all, or a handler marked ``opt={"not_implemented": True}``)."""
    have = handlers(app)
    result = {}
    for op in OPERATIONS:
        handler = have.get((op.method, shape(full_path(op))))
        result[op.id] = handler is not None and not handler.opt.get("not_implemented")
    return result


def not_implemented_response(operation_id: str, reason: str) -> Response[ErrorBody]:
    return error_response(
        HTTP_501_NOT_IMPLEMENTED, f"{operation_id} is not implemented by this service.", [reason]
    )


def _typed(match: re.Match[str]) -> str:
    """``{agent_id}`` -> ``{agent_id:str}``, as Litestar routes spell parameters."""
    return f"{{{match[0][1:-1]}:{_TYPE_OF.get(match[0], 'str')}}}"


def _handler(operation: Operation) -> Any:
    reason = (
        f"{operation.method} /v2/{{project_id}}{operation.path} is part of the Cloud Backup v2 "
        "API but has not been built here yet; see the README's status of the v2 surface."
    )

    def not_implemented(request: Request[Any, Any, Any]) -> Response[ErrorBody]:
        return not_implemented_response(operation.id, reason)

    path = _PARAMETER.sub(_typed, full_path(operation))
    return route(
        path,
        http_method=[HttpMethod(operation.method)],
        status_code=HTTP_501_NOT_IMPLEMENTED,
        sync_to_thread=False,
        opt={"public": operation.id in PUBLIC_OPERATIONS, "not_implemented": True},
        name=f"not-implemented-{operation.id}",
    )(not_implemented)


def register_not_implemented(app: Litestar) -> Litestar:
    """Route every operation of the index that no controller serves to a 501 answer."""
    for operation in unserved(app):
        app.register(_handler(operation))
    return app
