"""The failures every layer may raise: store, engine-facing code and the services share them.

``cloudbackup.domain.errors`` re-exports them with the HTTP status of each kind.
"""

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
