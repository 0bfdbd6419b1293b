"""Vault encryption and password verification for remote agents (spec §9 V2-V7, §2.7).

The password travels encrypted with the agent's RSA public key (docs/decisions.md, "Vault
passwords for remote agents"); only the agent's private key reads it, so the service records
the request as its event (``vault_encryption_enable`` / ``_change``, ``vault_password_verify``,
whose members carry the encrypted hex as the spec lists them) and hands it to the agent's
channel. The agent's report (V3/V6) is recorded as the result event (``vault_encryption_enabled``
/ ``_changed``, ``vault_password_verified``) whose id and time V4/V7 show. No table of its own:
the request and its answer are the two events, matched by ``request_id``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.domain.agent_channel import AgentChannel
from cloudbackup.domain.agents import live_agent, storable
from cloudbackup.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from cloudbackup.domain.vaults import EncryptionRequest, VaultService, VerificationRequest
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import EventRepository
from cloudbackup.store.tables import AGENTS, Agent, as_utc, utcnow
from cloudbackup.store.tables.events import EVENTS

NOT_THIS_AGENT = "Only the agent itself may report the result of its vault requests."
NOT_FOUND = "Vault request not found (unknown, or its result expired)."
NOT_READY = "The agent has not answered this request yet; try again shortly."
ANSWERED = "This request has been answered already."
NO_CHANNEL = "The agent's event channel is not available (the API has no Redis broker)."
WRONG_ACTION = "action must be {expected} for this request."
OTHER_VAULT = (
    "A remote agent checks only its own vault's password here (agent_id null or this agent): "
    "it may read no other agent's vault."
)
RESULT_SECONDS = 60  # spec §2.7: results are transient, about a minute

ENABLE, CHANGE, VERIFY = (
    "vault_encryption_enable",
    "vault_encryption_change",
    "vault_password_verify",
)
ANSWER_OF = {
    ENABLE: "vault_encryption_enabled",
    CHANGE: "vault_encryption_changed",
    VERIFY: "vault_password_verified",
}
ACTION_OF = {ENABLE: "enabled", CHANGE: "changed"}


class HostedAgent(Exception):
    """The agent is hosted: the service holds no private key to read the password with."""


@dataclass(frozen=True, slots=True)
class VaultResult:
    """An answered request as V4/V7 show it."""

    event_id: int
    time: datetime
    event: str
    agent_id: str
    request_id: str
    outcome: bool  # V4 ``succeeded``, V7 ``valid``


class VaultRequestService:
    """V2-V7 for remote agents; the documented refusals come first (``VaultService``)."""

    def __init__(
        self, db: Database, channel: AgentChannel | None, result_seconds: int = RESULT_SECONDS
    ) -> None:
        self.db = db
        self.channel = channel
        self.result_seconds = result_seconds
        self.checks = VaultService(db)

    # -- V2 / V5 ----------------------------------------------------------------------------
    def ask_encryption(self, project_id: str, agent_id: str, request: EncryptionRequest) -> str:
        self.checks.check_encryption_request(project_id, agent_id, request)
        old, new = request.old_password_hex, _squeezed(request.new_password_hex)
        if old is None:
            members: dict[str, Any] = {"encrypted_password_hex": new}
            event = ENABLE
        else:
            members = {"old_encrypted_password_hex": _squeezed(old)}
            members["new_encrypted_password_hex"] = new
            event = CHANGE
        return self._ask(project_id, agent_id, event, members)

    def ask_verification(self, project_id: str, agent_id: str, request: VerificationRequest) -> str:
        self.checks.check_verification_request(project_id, agent_id, request)
        if request.agent_id is not None and request.agent_id != agent_id:
            self._remote_agent(project_id, agent_id)
            raise Forbidden(OTHER_VAULT)
        members = {"encrypted_password_hex": _squeezed(request.password_hex)}
        return self._ask(project_id, agent_id, VERIFY, members)

    def _remote_agent(self, project_id: str, agent_id: str) -> Agent:
        with self.db.read() as session:
            agent = live_agent(session, project_id, agent_id)
        if not agent.remote:
            raise HostedAgent(agent_id)
        return agent

    def _ask(self, project_id: str, agent_id: str, event: str, members: dict[str, Any]) -> str:
        self._remote_agent(project_id, agent_id)
        if self.channel is None:
            raise Unavailable(NO_CHANNEL)
        request_id = str(uuid.uuid4())
        full = {"agent": {"id": agent_id}, "request_id": request_id, **members}
        with self.db.transaction() as session:
            EventRepository(session).insert(
                event=event, project_id=project_id, agent_id=agent_id, members=full
            )
            # Pushed before the commit: a request the agent never got is not recorded.
            if not self.channel.push(agent_id, {"type": "vault", **full, "event": event}):
                raise Unavailable(NO_CHANNEL)
        return request_id

    # -- V3 / V6 ----------------------------------------------------------------------------
    def report_encryption(
        self,
        project_id: str,
        agent_id: str,
        caller: str | None,
        request_id: str,
        action: str,
        succeeded: bool,
    ) -> None:
        with self.db.transaction() as session:
            asked = self._asked(session, project_id, agent_id, caller, request_id, (ENABLE, CHANGE))
            expected = ACTION_OF[asked]
            if action != expected:
                raise InvalidInput("Validation failed.", [WRONG_ACTION.format(expected=expected)])
            self._answer(session, project_id, agent_id, asked, request_id, {"succeeded": succeeded})
            if asked == ENABLE and succeeded:
                session.execute(
                    sa.update(AGENTS).where(AGENTS.c.id == agent_id).values(vault_encrypted=True)
                )

    def report_verification(
        self, project_id: str, agent_id: str, caller: str | None, request_id: str, verified: bool
    ) -> None:
        with self.db.transaction() as session:
            asked = self._asked(session, project_id, agent_id, caller, request_id, (VERIFY,))
            self._answer(session, project_id, agent_id, asked, request_id, {"valid": verified})

    def _asked(
        self,
        session: Session,
        project_id: str,
        agent_id: str,
        caller: str | None,
        request_id: str,
        kinds: tuple[str, ...],
    ) -> str:
        """The kind of the request being answered; 403 unless the caller is the agent."""
        live_agent(session, project_id, agent_id)
        if caller != agent_id:
            raise Forbidden(NOT_THIS_AGENT)
        row = _event(session, project_id, agent_id, request_id, kinds)
        if row is None:
            raise NotFound(NOT_FOUND)
        asked = str(row.event)
        if _event(session, project_id, agent_id, request_id, (ANSWER_OF[asked],)) is not None:
            raise Conflict(ANSWERED)
        return asked

    @staticmethod
    def _answer(
        session: Session,
        project_id: str,
        agent_id: str,
        asked: str,
        request_id: str,
        outcome: dict[str, bool],
    ) -> None:
        members = {"agent": {"id": agent_id}, "request_id": request_id, **outcome}
        EventRepository(session).insert(
            event=ANSWER_OF[asked], project_id=project_id, agent_id=agent_id, members=members
        )

    # -- V4 / V7 ----------------------------------------------------------------------------
    def encryption_result(self, project_id: str, agent_id: str, request_id: str) -> VaultResult:
        return self._result(project_id, agent_id, request_id, (ENABLE, CHANGE), "succeeded")

    def verification_result(self, project_id: str, agent_id: str, request_id: str) -> VaultResult:
        return self._result(project_id, agent_id, request_id, (VERIFY,), "valid")

    def _result(
        self,
        project_id: str,
        agent_id: str,
        request_id: str,
        kinds: tuple[str, ...],
        member: str,
    ) -> VaultResult:
        with self.db.read() as session:
            live_agent(session, project_id, agent_id)
            answers = tuple(ANSWER_OF[kind] for kind in kinds)
            row = _event(session, project_id, agent_id, request_id, answers)
            if row is None:
                asked = _event(session, project_id, agent_id, request_id, kinds)
                raise NotFound(NOT_FOUND if asked is None else NOT_READY)
        time = as_utc(row.time)
        if utcnow() - time > timedelta(seconds=self.result_seconds):
            raise NotFound(NOT_FOUND)
        outcome = bool((row.members or {}).get(member))
        return VaultResult(int(row.id), time, str(row.event), agent_id, request_id, outcome)


def _squeezed(hex_text: str) -> str:
    """The hex without the whitespace OQ-16 lets a client wrap it with."""
    return "".join(hex_text.split()).lower()


def _event(
    session: Session, project_id: str, agent_id: str, request_id: str, kinds: tuple[str, ...]
) -> Any:
    """The latest event of ``kinds`` for this agent's request ``request_id`` (or None)."""
    if not storable(request_id):
        return None
    query = (
        sa.select(EVENTS.c.id, EVENTS.c.time, EVENTS.c.event, EVENTS.c.members)
        .where(
            EVENTS.c.project_id == project_id,
            EVENTS.c.agent_id == agent_id,
            EVENTS.c.event.in_(kinds),
            EVENTS.c.members["request_id"].as_string() == request_id,
        )
        .order_by(EVENTS.c.id.desc())
        .limit(1)
    )
    return session.execute(query).first()
