"""Failures the services report, and the one HTTP status each kind is answered with."""

from __future__ import annotations

from cloudbackup.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "STATUS_OF",
    "Conflict",
    "DomainError",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "Unauthenticated",
    "Unavailable",
    "status_of",
]


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
