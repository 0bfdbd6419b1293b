"""Browsing: list a directory inside a backup's snapshot (B5/B6) or on an agent's host (A10/A11).

The API records the request (and its `backup_browse` / `host_browse` event) and hands it to a
worker; the API process never reads a vault or a host directory. The worker, acting as the agent,
answers it: the listing is stored with the request and a `backup_browsed` / `host_browsed` event
is recorded, whose id and time the result carries (OQ-25). Results are readable for
``browse_result_seconds`` after the answer, then 404 again (spec §14.8).
"""

from __future__ import annotations

import base64
import binascii
import logging
import mimetypes
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from cloudbackup.domain.agent_channel import AgentChannel, check_own_agent
from cloudbackup.domain.agents import live_agent, storable
from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.domain.errors import Conflict, InvalidInput, NotFound
from cloudbackup.domain.restores import path_problem
from cloudbackup.domain.roots import RootsPolicy
from cloudbackup.domain.vaults import open_service_vault
from cloudbackup.engine import Entry
from cloudbackup.engine.listing import Child, host_children, snapshot_children
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import BackupRepository
from cloudbackup.store.run_repositories import BrowseRepository, vault_encrypted
from cloudbackup.store.tables import Agent, Backup, BrowseRequest, as_utc, utcnow

log = logging.getLogger("cloudbackup.browse")

DIRECTORY_TYPE = "application/x-directory"
SYMLINK_TYPE = "application/x-symlink-file"
DEFAULT_TYPE = "application/octet-stream"
NOT_READY = "The browse request has not been answered yet; try again shortly."
NOT_FOUND = "Browse request not found (unknown, or its result expired)."
# Only the built-in table: the answer must not depend on the worker machine's /etc/mime.types.
_MIME = mimetypes.MimeTypes()


@dataclass(frozen=True, slots=True)
class BrowseAsk:
    """A B5/A10 body after decoding (types checked; values not yet)."""

    path: str
    path_encoded: str | None
    agent_id: str | None = None  # B5 only: the agent that performs the browse
    encrypted_password_hex: str | None = None  # B5 only; never stored


@dataclass(frozen=True, slots=True)
class BrowseResult:
    """An answered request as B6/A11 show it."""

    request: BrowseRequest
    event: str
    time: datetime


def encode_name(raw: bytes) -> tuple[str, str]:
    """(display text, ``*_encoded`` form): the base64 of the bytes when they are not UTF-8."""
    try:
        return raw.decode("utf-8"), ""
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), base64.b64encode(raw).decode("ascii")


def requested_path(ask: BrowseAsk) -> bytes:
    """The directory asked for, as bytes: ``path_encoded`` (OQ-16) wins when it is not empty."""
    if ask.path_encoded:
        try:
            raw = base64.b64decode(ask.path_encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(
                "Validation failed.", ["path_encoded must be base64 (or null or empty)."]
            ) from exc
        problem = path_problem("path_encoded", raw.decode("utf-8", "backslashreplace"))
        if problem is not None or b"\x00" in raw:
            raise InvalidInput("Validation failed.", [problem or "path_encoded holds a NUL."])
        return raw
    problem = path_problem("path", ask.path)
    if problem is not None:
        raise InvalidInput("Validation failed.", [problem])
    return os.fsencode(ask.path)


def _item(name: bytes, kind: str, size: int) -> dict[str, Any]:
    text, encoded = encode_name(name)
    if kind == "dir":
        mime = DIRECTORY_TYPE
    elif kind == "symlink":
        mime = SYMLINK_TYPE
    elif kind == "file":
        mime = _MIME.guess_type(text, strict=False)[0] or DEFAULT_TYPE
    else:
        mime = DEFAULT_TYPE
    return {
        "name": text,
        "name_encoded": encoded,
        "bytes": size if kind == "file" else 0,
        "mime_type": mime,
    }


def list_snapshot_dir(entries: Iterable[Entry], directory: bytes) -> list[dict[str, Any]] | None:
    """The children of ``directory`` in a snapshot as B6 items; None when there is no such
    directory (``engine.listing.snapshot_children``)."""
    children = snapshot_children(entries, directory)
    return None if children is None else [_item(*child) for child in children]


def list_host_dir(directory: bytes, limit: int) -> list[dict[str, Any]]:
    """The children of a directory of this host as A11 items (the worker acts as the agent).

    Raises ``OSError`` when the directory cannot be listed.
    """
    return [_item(*child) for child in host_children(directory, limit)]


class BrowseService:
    """B5/B6 and A10/A11 for the API."""

    def __init__(self, db: Database, dispatcher: Dispatcher | None, settings: Settings) -> None:
        self.db = db
        self.dispatcher = dispatcher
        self.settings = settings

    # -- B5 / A10 ---------------------------------------------------------------------------
    def ask_backup(self, project_id: str, backup_id: str, ask: BrowseAsk) -> str:
        """Record a request to list a directory of a backup; return its request id."""
        path = requested_path(ask)
        secret = ask.encrypted_password_hex
        if secret is not None and not _is_hex(secret):
            raise InvalidInput(
                "Validation failed.", ["encrypted_password_hex must be hexadecimal digits."]
            )
        with self.db.transaction() as session:
            backup = (
                BackupRepository(session).get(backup_id, project_id)
                if storable(backup_id)
                else None
            )
            if backup is None:
                raise NotFound("Backup not found.")
            agent = live_agent(session, project_id, ask.agent_id or "")
            if not backup.restorable or backup.snapshot_id is None:
                raise Conflict(
                    f"Backup {backup.id} is {backup.state} and has no snapshot to browse."
                )
            request_id = self._insert(session, project_id, "backup", agent.id, backup.id, ask)
            text, encoded = encode_name(path)
            # Tagged with the performing agent (EV4: its command) and the backup (EV5, EV8).
            BrowseRepository(session).add_event(
                event="backup_browse",
                project_id=project_id,
                agent_id=agent.id,
                configuration_id=backup.configuration_id,
                backup_id=backup.id,
                members={
                    "agent": {
                        "id": agent.id,
                        "vault": {
                            "id": backup.vault_id,
                            "encrypted": vault_encrypted(session, backup.vault_id),
                        },
                    },
                    "configuration": {"id": backup.configuration_id},
                    "backup": {"snapshot_id": backup.snapshot_id},
                    "request_id": request_id,
                    "path": text,
                    "path_encoded": encoded,
                    # The worker reads the vault key from its own key store, never from events.
                    "encrypted_password_hex": None,
                },
            )
        self._publish(request_id, agent.id)
        return request_id

    def ask_host(self, project_id: str, agent_id: str, ask: BrowseAsk) -> str:
        """Record a request to list a directory of the agent's host; return its request id."""
        path = requested_path(ask)
        with self.db.transaction() as session:
            agent = live_agent(session, project_id, agent_id)
            roots = RootsPolicy.from_settings(self.settings).for_agent(agent.allowed_roots)
            refusal = roots.refusal("path", os.fsdecode(path))
            if refusal is not None:
                raise InvalidInput("Validation failed.", [refusal])
            request_id = self._insert(session, project_id, "host", agent.id, None, ask)
            text, encoded = encode_name(path)
            BrowseRepository(session).add_event(
                event="host_browse",
                project_id=project_id,
                agent_id=agent.id,
                members={
                    "agent": {"id": agent.id},
                    "request_id": request_id,
                    "path": text,
                    "path_encoded": encoded,
                },
            )
        self._publish(request_id, agent.id)
        return request_id

    def _insert(
        self,
        session: Session,
        project_id: str,
        kind: str,
        agent_id: str,
        backup_id: str | None,
        ask: BrowseAsk,
    ) -> str:
        request_id = str(uuid.uuid4())
        now = utcnow()
        BrowseRepository(session).insert(
            {
                "id": request_id,
                "project_id": project_id,
                "kind": kind,
                "agent_id": agent_id,
                "backup_id": backup_id,
                "path": ask.path,
                "path_encoded": ask.path_encoded or None,
                "state": "pending",
                "published_at": now,
                "created_at": now,
            }
        )
        return request_id

    def _publish(self, request_id: str, agent_id: str) -> None:
        if self.dispatcher is not None:
            self.dispatcher.publish("browse", request_id, agent_id=agent_id)

    # -- B6 / A11 ---------------------------------------------------------------------------
    def backup_result(self, project_id: str, backup_id: str, request_id: str) -> BrowseResult:
        with self.db.transaction() as session:
            if (
                not storable(backup_id)
                or BackupRepository(session).get(backup_id, project_id) is None
            ):
                raise NotFound("Backup not found.")
            return self._result(session, project_id, request_id, "backup", backup_id)

    def host_result(self, project_id: str, agent_id: str, request_id: str) -> BrowseResult:
        with self.db.transaction() as session:
            live_agent(session, project_id, agent_id)
            return self._result(session, project_id, request_id, "host", agent_id)

    def answer_from_agent(
        self,
        project_id: str,
        agent_id: str,
        caller: str | None,
        request_id: str,
        answer: AgentAnswer,
    ) -> str:
        """Store a remote agent's answer to a request handed to it; only its own token may
        (403), only for its own pending requests (404; 409 once answered)."""
        check_own_agent(self.db, project_id, agent_id, caller)
        with self.db.read() as session:
            row = (
                BrowseRepository(session).get(request_id, project_id)
                if storable(request_id)
                else None
            )
        if row is None or row.agent_id != agent_id:
            raise NotFound(NOT_FOUND)
        if row.state != "pending":
            raise Conflict("The browse request is answered already.")
        directory = requested_path(BrowseAsk(path=row.path, path_encoded=row.path_encoded))
        items = None
        if answer.succeeded:
            items = [_item(*child) for child in answer.children[: self.settings.browse_max_items]]
        if _store_answer(self.db, row, directory, items) == "noop":
            raise Conflict("The browse request is answered already.")
        return "answered" if items is not None else "failed"

    def _result(
        self, session: Session, project_id: str, request_id: str, kind: str, owner: str
    ) -> BrowseResult:
        row = (
            BrowseRepository(session).get(request_id, project_id) if storable(request_id) else None
        )
        if row is None or row.kind != kind or owner not in (row.backup_id, row.agent_id):
            raise NotFound(NOT_FOUND)
        if row.state != "answered" or row.answered_at is None:
            raise NotFound(NOT_READY)
        answered = as_utc(row.answered_at)
        if utcnow() - answered > timedelta(seconds=self.settings.browse_result_seconds):
            raise NotFound(NOT_FOUND)
        return BrowseResult(row, f"{kind}_browsed", answered)


def _is_hex(text: str) -> bool:
    digits = "".join(text.split())
    return bool(digits) and all(ch in "0123456789abcdefABCDEF" for ch in digits)


# -- the worker side --------------------------------------------------------------------------


def answer_browse(
    db: Database, settings: Settings, request_id: str, channel: AgentChannel | None = None
) -> str:
    """List what the request asks for and store the answer; `noop` if it was answered already.
    A remote agent's request goes to its channel instead (``delegated``): only its host has its
    files and its vault's password; it answers with :meth:`BrowseService.answer_from_agent`."""
    with db.transaction() as session:
        row = BrowseRepository(session).get(request_id)
        if row is None or row.state != "pending":
            return "noop"
        backup = BackupRepository(session).get(row.backup_id) if row.backup_id else None
        agent = session.get(Agent, row.agent_id)
    ask = BrowseAsk(path=row.path, path_encoded=row.path_encoded)
    directory = requested_path(ask)
    if agent is not None and agent.remote:
        return _hand_to_agent(db, settings, channel, row, agent, backup, directory)
    items: list[dict[str, Any]] | None
    try:
        if row.kind == "host":
            refusal = _host_refusal(settings, agent, directory)
            if refusal is not None:
                log.warning("browse request %s refused: %s", request_id, refusal)
                items = None
            else:
                items = list_host_dir(directory, settings.browse_max_items)
        elif backup is None or backup.snapshot_id is None or not backup.restorable:
            items = None
        else:
            vault = open_service_vault(db, settings, backup.vault_id)
            items = list_snapshot_dir(vault.iter_entries(backup.snapshot_id), directory)
            if items is not None:
                items = items[: settings.browse_max_items]
    except Exception:  # the listing failed: answer so, the client is polling for it
        log.exception("browse request %s could not be answered", request_id)
        items = None
    return _store_answer(db, row, directory, items)


def _host_refusal(settings: Settings, agent: Agent | None, directory: bytes) -> str | None:
    """Why the agent's roots, as they are now, refuse listing ``directory`` (listing follows
    every link on the way, the last one too: where it leads is judged)."""
    roots = RootsPolicy.from_settings(settings).for_agent(
        agent.allowed_roots if agent is not None else []
    )
    return roots.refusal("path", os.fsdecode(directory))


def _hand_to_agent(
    db: Database,
    settings: Settings,
    channel: AgentChannel | None,
    row: BrowseRequest,
    agent: Agent,
    backup: Backup | None,
    directory: bytes,
) -> str:
    """Push the request to the remote agent's channel; what the server can refuse itself (roots,
    a backup that is gone or in another agent's vault) is answered ``failed`` here."""
    refusal: str | None = None
    snapshot_id: int | None = None
    if row.kind == "host":
        refusal = _host_refusal(settings, agent, directory)
    elif backup is None or backup.snapshot_id is None or not backup.restorable:
        refusal = "the backup has no snapshot to browse"
    elif backup.vault_id != agent.vault_id:
        refusal = "the backup is in another agent's vault, whose password only that agent holds"
    else:
        snapshot_id = backup.snapshot_id
    if refusal is not None:
        log.warning("browse request %s refused: %s", row.id, refusal)
        return _store_answer(db, row, directory, None)
    item = {
        "type": "browse",
        "kind": row.kind,
        "id": row.id,
        "path_encoded": base64.b64encode(directory).decode("ascii"),
        "snapshot_id": snapshot_id,
        "limit": settings.browse_max_items,
    }
    if channel is None or not channel.push(agent.id, item):
        # Left pending: the sweeper publishes it again.
        log.warning("could not hand browse request %s to agent %s", row.id, agent.id)
        return "noop"
    return "delegated"


@dataclass(frozen=True, slots=True)
class AgentAnswer:
    """A remote agent's answer to a browse request: the listed children, or none."""

    succeeded: bool
    children: list[Child]


def _store_answer(
    db: Database, row: BrowseRequest, directory: bytes, items: list[dict[str, Any]] | None
) -> str:
    """Record the answer and its ``*_browsed`` event; ``noop`` if another answered first."""
    text, encoded = encode_name(directory.rstrip(b"/") + b"/")
    now = utcnow()
    with db.transaction() as session:
        repo = BrowseRepository(session)
        values = {"succeeded": items is not None, "items": items or [], "answered_at": now}
        if not repo.answer(row.id, values):
            return "noop"  # another delivery answered it first
        event_id = repo.add_event(
            event=f"{row.kind}_browsed",
            project_id=row.project_id,
            agent_id=row.agent_id,
            time=now,
            members={
                "agent": {"id": row.agent_id},
                "request_id": row.id,
                "succeeded": items is not None,
                "path": text,
                "path_encoded": encoded,
            },
        )
        repo.set_event(row.id, event_id)
    return "answered" if items is not None else "failed"


@dataclass(frozen=True, slots=True)
class BrowseSweepReport:
    republished: int
    purged: int


def sweep_browse(
    db: Database, dispatcher: Dispatcher, settings: Settings, now: datetime | None = None
) -> BrowseSweepReport:
    """Re-publish unanswered requests (the publish or the message was lost) and delete results
    past their lifetime, and requests nobody answered within ten lifetimes."""
    now = now or utcnow()
    lifetime = timedelta(seconds=settings.browse_result_seconds)
    with db.transaction() as session:
        repo = BrowseRepository(session)
        purged = repo.purge(now - lifetime, now - 10 * lifetime)
        pending = repo.pending(now - timedelta(seconds=settings.sweep_after_seconds))
    published = [
        request_id
        for request_id, agent_id in pending
        if dispatcher.publish("browse", request_id, agent_id=agent_id)
    ]
    if published:
        with db.transaction() as session:
            BrowseRepository(session).mark_published(published)
    return BrowseSweepReport(republished=len(published), purged=purged)
