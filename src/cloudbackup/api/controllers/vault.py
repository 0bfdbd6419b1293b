"""Vault operations: V1 (move) works; V2-V7 (encryption and password verification) answer their
documented refusals, then 501 (spec §9; why in :data:`ENCRYPTION_MISSING`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, RawBody
from litestar.status_codes import HTTP_204_NO_CONTENT, HTTP_501_NOT_IMPLEMENTED

from cloudbackup.api.call import Call
from cloudbackup.api.controllers.not_implemented import not_implemented_response
from cloudbackup.api.schemas.common import ErrorBody
from cloudbackup.api.schemas.vault import parse_encryption, parse_move, parse_verification
from cloudbackup.domain.auth import Permission
from cloudbackup.domain.vaults import VaultService

Vaults = NamedDependency[VaultService]
Id = FromPath[str]
RequestT = TypeVar("RequestT")
# Marks the handlers that answer 501 (the README's status table is checked against it).
MISSING: dict[str, Any] = {"not_implemented": True}
# §1.7: an agent reporting a result needs the Update permission, not Create.
REPORT: dict[str, Any] = {**MISSING, "permission": Permission.UPDATE}
ENCRYPTION_MISSING = (
    "Vault passwords reach the agent encrypted with the agent's RSA public key "
    "(*_encrypted_password_hex). Here the workers act as the agent and hold the vault data, "
    "but they do not have the agent's private key, so they cannot read the password to "
    "encrypt, re-key or check the vault. Encrypt a new vault with a key file instead "
    "(CLOUDBACKUP_VAULT_KEY_DIR/<vault_id>.key, see docs/engine.md)."
)


def _missing(operation_id: str) -> Response[ErrorBody]:
    return not_implemented_response(operation_id, ENCRYPTION_MISSING)


def _answers_501(
    route: Callable[..., HTTPRouteHandler], path: str, opt: dict[str, Any]
) -> HTTPRouteHandler:
    """The route of an operation that gives its documented refusals, then answers 501."""
    return route(path, status_code=HTTP_501_NOT_IMPLEMENTED, opt=opt, sync_to_thread=True)


def _known_agent_then_501(
    name: str,
    operation_id: str,
    route: Callable[..., HTTPRouteHandler],
    path: str,
    opt: dict[str, Any],
) -> HTTPRouteHandler:
    """The handler ``name`` of an operation on an agent's vault (V3, V4, V6, V7): 404 for an
    unknown agent, else 501."""

    # No docstring: the generated OpenAPI document takes a handler's docstring as its description.
    def handler(self: Controller, call: Call, agent_id: Id, vaults: Vaults) -> Response[ErrorBody]:
        vaults.require_agent(call.project_id, agent_id)
        return _missing(operation_id)

    # Litestar names the route (and the OpenAPI summary) after the function.
    handler.__name__ = handler.__qualname__ = name
    return _answers_501(route, path, opt)(handler)


def _checked_then_501(
    name: str,
    operation_id: str,
    path: str,
    description: str,
    parse: Callable[[Request[Any, Any, Any], bytes], RequestT],
    check: Callable[[VaultService, str, str, RequestT], None],
) -> HTTPRouteHandler:
    """The handler ``name`` of a request on an agent's vault (V2, V5): its body ``parse``d (400),
    then ``check``ed for the documented refusals, else 501."""

    def handler(
        self: Controller, call: Call, agent_id: Id, body: RawBody, vaults: Vaults
    ) -> Response[ErrorBody]:
        check(vaults, call.project_id, agent_id, parse(call.request, body))
        return _missing(operation_id)

    # Litestar names the route (and the OpenAPI summary) after the function, and describes the
    # operation with its docstring.
    handler.__name__ = handler.__qualname__ = name
    handler.__doc__ = description
    return _answers_501(post, path, MISSING)(handler)


class VaultController(Controller):
    path = "/v2/{project_id:str}/agents/{agent_id:str}"

    @post("/vault", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def move_vault(self, call: Call, agent_id: Id, body: RawBody, vaults: Vaults) -> None:
        """V1: this agent takes over the vault of ``source_agent_id`` (OQ-24)."""
        vaults.move(call.project_id, agent_id, parse_move(call.request, body))

    request_encryption = _checked_then_501(
        "request_encryption",
        "V2",
        "/vault-encryption-requests",
        "V2: 400/404/403 as documented, else 501.",
        parse_encryption,
        VaultService.check_encryption_request,
    )
    request_verification = _checked_then_501(
        "request_verification",
        "V5",
        "/vault-password-verification-requests",
        "V5: 400/404/403 as documented (an unencrypted vault has no password), else 501.",
        parse_verification,
        VaultService.check_verification_request,
    )
    report_encryption = _known_agent_then_501(
        "report_encryption", "V3", post, "/vault-encryption-requests/{request_id:str}", REPORT
    )
    encryption_result = _known_agent_then_501(
        "encryption_result", "V4", get, "/vault-encryption-requests/{request_id:str}", MISSING
    )
    report_verification = _known_agent_then_501(
        "report_verification",
        "V6",
        post,
        "/vault-password-verification-requests/{request_id:str}",
        REPORT,
    )
    verification_result = _known_agent_then_501(
        "verification_result",
        "V7",
        get,
        "/vault-password-verification-requests/{request_id:str}",
        MISSING,
    )
