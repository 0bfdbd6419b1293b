"""Failures the services report, and the one HTTP status each kind is answered with."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every expected failure: carries a user-facing message and optional details."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class InvalidInput(DomainError):
    """The request is well-formed but its values break a rule (HTTP 400)."""


class Unauthenticated(DomainError):
    """No valid credentials (HTTP 401)."""


class Forbidden(DomainError):
    """Authenticated, but not allowed (HTTP 403)."""


class NotFound(DomainError):
    """Unknown, or belongs to another project (HTTP 404)."""


class Conflict(DomainError):
    """The current state of the resource forbids the change (HTTP 409)."""


class Unavailable(DomainError):
    """A dependency (database, broker) cannot be reached right now (HTTP 503)."""


# One map for the API's JSON answers and the console's error pages.
STATUS_OF: dict[type[DomainError], int] = {
    InvalidInput: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Unavailable: 503,
}


def status_of(exc: DomainError) -> int:
    """The HTTP status of a failure (500 for a kind without one)."""
    return next((code for kind, code in STATUS_OF.items() if isinstance(exc, kind)), 500)
