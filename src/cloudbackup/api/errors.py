"""Map every failure to a JSON body `{"message": ..., "errors": [...]}` (spec §1.5).

Domain errors carry their own status (`status_of`); Litestar's own HTTP errors (404 route, 405
method, 413 body too large, 400 bad parameter) are reshaped; database outages are 503; anything
else is a 500 that says nothing about internals.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException

from cloudbackup.api.schemas.common import ErrorBody
from cloudbackup.domain.errors import DomainError, status_of
from cloudbackup.store.db import is_connection_error

log = logging.getLogger("cloudbackup.api")

_HTTP_MESSAGES = {
    400: "Bad request.",
    401: "Authentication required.",
    403: "Forbidden.",
    404: "Not found.",
    405: "Method not allowed.",
    406: "Not acceptable.",
    413: "Request body too large.",
    415: "Unsupported media type.",
    500: "Internal server error.",
    503: "Service unavailable.",
}


def error_response(
    status: int,
    message: str,
    errors: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[ErrorBody]:
    return Response(
        ErrorBody(message=message, errors=errors or []),
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def _domain(_: Request[Any, Any, Any], exc: DomainError) -> Response[ErrorBody]:
    status = status_of(exc)
    headers = {"Retry-After": "5"} if status == 503 else None
    return error_response(status, exc.message, exc.errors, headers)


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    status = exc.status_code
    errors: list[str] = []
    extra = getattr(exc, "extra", None)
    if isinstance(extra, list):
        errors = [
            str(item.get("message", item)) if isinstance(item, dict) else str(item)
            for item in extra
        ]
    detail = exc.detail if exc.detail and exc.detail != _default_phrase(status) else ""
    message = detail or _HTTP_MESSAGES.get(status, "Request failed.")
    headers = dict(exc.headers or {})
    return error_response(status, message, errors, headers or None)


def _database(_: Request[Any, Any, Any], exc: sa.exc.SQLAlchemyError) -> Response[ErrorBody]:
    if isinstance(exc, sa.exc.TimeoutError) or (
        isinstance(exc, sa.exc.DBAPIError) and is_connection_error(exc)
    ):
        return error_response(
            503,
            "The database is unreachable; retry in a few seconds.",
            headers={"Retry-After": "5"},
        )
    log.exception("database error")
    return error_response(500, "Internal server error.")


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "Internal server error.")


def _default_phrase(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


EXCEPTION_HANDLERS: dict[Any, Any] = {
    DomainError: _domain,
    HTTPException: _http,
    sa.exc.SQLAlchemyError: _database,
    Exception: _unexpected,
}
