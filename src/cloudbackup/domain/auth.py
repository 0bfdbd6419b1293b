"""Tokens and roles (spec §1.7): who the caller is and what the caller may do.

Tokens are random secrets; only their SHA-256 is stored. The most permissive role wins.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.domain.errors import InvalidInput
from cloudbackup.store.db import rowcount
from cloudbackup.store.tables import API_TOKENS, ApiToken, as_utc, utcnow


class Permission(StrEnum):
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    DELETE = "delete"


_CRUD = frozenset({Permission.CREATE, Permission.READ, Permission.UPDATE, Permission.DELETE})
_CRU = frozenset({Permission.CREATE, Permission.READ, Permission.UPDATE})
_R = frozenset({Permission.READ})

ROLE_GRANTS: dict[str, frozenset[Permission]] = {
    "identity:user-admin": _CRUD,
    "admin": _CRUD,
    "observer": _R,
    "cloudbackup:admin": _CRUD,
    "cloudbackup:creator": _CRU,
    "cloudbackup:observer": _R,
}
MAX_SECRET_LENGTH = 256  # longer is never one of our tokens: refused before hashing or asking
# Short names accepted by the CLI: `--role admin|creator|observer` mean the product roles.
ROLE_ALIASES = {"creator": "cloudbackup:creator"}


def normalize_role(name: str) -> str:
    role = ROLE_ALIASES.get(name, name)
    if role not in ROLE_GRANTS:
        known = ", ".join(sorted(set(ROLE_GRANTS) | set(ROLE_ALIASES)))
        raise InvalidInput(f"Unknown role {name!r}; use one of: {known}.")
    return role


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: its project and the union of its roles' permissions."""

    token_id: str
    project_id: str
    roles: tuple[str, ...]
    agent_id: str | None = None

    @property
    def permissions(self) -> frozenset[Permission]:
        granted: set[Permission] = set()
        for role in self.roles:
            granted |= ROLE_GRANTS.get(role, frozenset())
        return frozenset(granted)

    def may(self, permission: Permission) -> bool:
        return permission in self.permissions


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(
    session: Session,
    project_id: str,
    roles: list[str],
    *,
    ttl: timedelta | None = None,
    agent_id: str | None = None,
) -> tuple[str, ApiToken]:
    """Create a token; the secret is returned once and never stored."""
    if not project_id:
        raise InvalidInput("A project id is required.")
    normalized = sorted({normalize_role(r) for r in roles}) or ["cloudbackup:observer"]
    secret = secrets.token_hex(16)
    row = ApiToken(
        id=str(uuid.uuid4()),
        token_hash=hash_token(secret),
        project_id=project_id,
        roles=",".join(normalized),
        agent_id=agent_id,
        expires_at=utcnow() + ttl if ttl else None,
    )
    session.add(row)
    return secret, row


def authenticate(session: Session, secret: str, now: datetime | None = None) -> Principal | None:
    """The principal of a token secret, or None when unknown, expired or revoked."""
    if not secret or len(secret) > MAX_SECRET_LENGTH:
        return None
    digest = hash_token(secret)
    row = session.execute(
        sa.select(ApiToken).where(API_TOKENS.c.token_hash == digest)
    ).scalar_one_or_none()
    # Found by hash; compared again in constant time so timing says nothing about near misses.
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    now = now or utcnow()
    if row.revoked_at is not None:
        return None
    if row.expires_at is not None and as_utc(row.expires_at) <= now:
        return None
    return Principal(
        token_id=row.id,
        project_id=row.project_id,
        roles=tuple(row.roles.split(",")),
        agent_id=row.agent_id,
    )


def revoke_token(session: Session, token_id: str) -> bool:
    result = session.execute(
        sa.update(ApiToken)
        .where(API_TOKENS.c.id == token_id, API_TOKENS.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(rowcount(result))
