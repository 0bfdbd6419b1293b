"""Authentication and RBAC for every route: one guard, applied app-wide (spec §1.3, §1.7).

`X-Auth-Token` is looked up by `principal_of` (cached briefly in-process); the token's project
must be the path's project, and the token's roles must grant the permission of the HTTP method.
Routes that need no token say so with ``opt={"public": True}``.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from cloudbackup.domain.auth import Permission
from cloudbackup.domain.credentials import TokenCache, principal_of
from cloudbackup.domain.errors import Forbidden, NotFound, Unauthenticated

__all__ = ["METHOD_PERMISSION", "TokenCache", "require_token"]  # app.py builds the TokenCache

METHOD_PERMISSION = {
    "GET": Permission.READ,
    "HEAD": Permission.READ,
    "POST": Permission.CREATE,
    "PUT": Permission.UPDATE,
    "PATCH": Permission.UPDATE,
    "DELETE": Permission.DELETE,
}


# The ``opt`` of a route needing another permission than its method's: the admin role's Delete
# (what reaches beyond one resource: webhooks, drill schedules, dismissing an anomaly), or
# Update where an agent, which holds neither Create nor Delete (§1.7), reports or writes.
NEEDS_DELETE: dict[str, Any] = {"permission": Permission.DELETE}
NEEDS_UPDATE: dict[str, Any] = {"permission": Permission.UPDATE}

AGENT_TOKEN_MISMATCH = "X-Agent-Id must name the agent of this token."


async def require_token(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Litestar guard: sets ``connection.state.principal`` or raises 401/403/404."""
    if handler.opt.get("public"):
        return
    secret = connection.headers.get("x-auth-token", "")
    if not secret:
        raise Unauthenticated("Authentication required: send a valid X-Auth-Token header.")
    state = connection.app.state
    principal = await principal_of(secret, state.database, state.token_cache)
    if principal is None:
        raise Unauthenticated("The X-Auth-Token is invalid, expired or revoked.")
    project_id = connection.path_params.get("project_id")
    if project_id is not None and project_id != principal.project_id:
        # Another tenant's project: answer as if it did not exist (nothing is disclosed).
        raise NotFound("Not found.")
    method = str(connection.scope.get("method", "GET"))
    permission = handler.opt.get("permission") or METHOD_PERMISSION.get(method, Permission.READ)
    if not principal.may(permission):
        raise Forbidden(
            f"Your role does not allow this operation ({permission} permission required)."
        )
    header = connection.headers.get("x-agent-id")
    if principal.agent_id is not None and header is not None and header != principal.agent_id:
        raise Forbidden(AGENT_TOKEN_MISMATCH)
    connection.state.principal = principal


def reporting_agent(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The agent a report on a run (progress, results, logs, events) speaks for: the agent of
    the caller's token (A9). A user's token speaks for no agent, whatever X-Agent-Id says, so
    its reports are refused; it keeps every operation the spec gives users."""
    agent_id: str | None = connection.state.principal.agent_id
    return agent_id
