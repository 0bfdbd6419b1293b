"""Restores: start (R1), read (R2/R3), update (R4), errors (ER2), events (EV6); and finding what
to restore: a restorable backup's vault and snapshot (also used by the CLI).

What every run shares (reading, the PATCH, the state change) is in ``domain.runs``; the start
is the restore's own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy.orm import Session

from cloudbackup.domain import configurations, cross_agent_restores
from cloudbackup.domain.agents import live_agent, storable
from cloudbackup.domain.backups import ErrorReport
from cloudbackup.domain.configurations import (
    PathItem,
    lies_inside,
    path_item_problem,
    path_key,
    same_path_as_exclusion,
)
from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.domain.errors import Conflict, InvalidInput, NotFound
from cloudbackup.domain.events import record_restore_event
from cloudbackup.domain.roots import NO_POLICY, RootsPolicy
from cloudbackup.domain.run_states import RESTORE_MACHINE, RestoreState
from cloudbackup.domain.runs import RunKind, RunService, RunUpdate, backup_values, new_run_values
from cloudbackup.domain.vaults import open_service_vault
from cloudbackup.engine import Vault
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import BackupRepository
from cloudbackup.store.run_repositories import RestoreRepository, vault_encrypted
from cloudbackup.store.tables import Agent, Configuration, Restore, RestoreError

RESTORE_ERROR_REASON = "unable_to_process_some_files"
RESTORE_DIAGNOSTICS = "Some files may not have been restored."
MAX_PATH_LENGTH = 4096
_HEX = re.compile(r"[0-9a-fA-F]+")


# -- the vault and snapshot of a backup -------------------------------------------------------


class RestoreTarget(NamedTuple):
    """Where a backup's files lie: its vault, opened, and its snapshot."""

    vault: Vault
    snapshot_id: int


def locate_snapshot(
    db: Database, settings: Settings, backup_id: str, project_id: str | None = None
) -> RestoreTarget:
    with db.transaction() as session:
        backup = BackupRepository(session).get(backup_id, project_id)
    if backup is None:
        raise NotFound(f"Backup {backup_id} not found.")
    if not backup.restorable or backup.snapshot_id is None:
        raise Conflict(f"Backup {backup_id} is {backup.state} and not restorable.")
    return RestoreTarget(open_service_vault(db, settings, backup.vault_id), backup.snapshot_id)


# -- R1 input rules ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RestoreRequest:
    """An R1 body after decoding (types checked; values not yet)."""

    backup_id: str
    destination_agent_id: str
    destination_path: str | None
    overwrite_files: bool
    encrypted_password_hex: str | None
    inclusions: tuple[PathItem, ...]
    exclusions: tuple[PathItem, ...]


def path_problem(label: str, path: str, *, folder: bool = True) -> str | None:
    """Why ``path`` is not an acceptable absolute path (OQ-33), or None."""
    return configurations.path_problem(label, path, folder=folder, max_length=MAX_PATH_LENGTH)


def check_selection(inclusions: Sequence[PathItem], exclusions: Sequence[PathItem]) -> list[str]:
    """The rules of spec §16.2 for a restore's paths (OQ-33), except that an exclusion need not
    lie inside an inclusion (an empty ``inclusions`` selects the whole backup)."""
    problems: list[str] = []
    for kind, items in (("Inclusion", inclusions), ("Exclusion", exclusions)):
        for item in items:
            if (problem := path_item_problem(kind, item, MAX_PATH_LENGTH)) is not None:
                problems.append(problem)
    if problems:
        return problems  # the relations below need well-formed paths
    for kind, items in (("Inclusion", inclusions), ("Exclusion", exclusions)):
        seen: set[tuple[str, ...]] = set()
        for item in items:
            key = path_key(item.path)
            if key in seen:
                problems.append(f"{kind} {item.path!r} is listed more than once.")
            seen.add(key)
            problems += lies_inside(kind, item, items)
    by_key = {path_key(e.path): e for e in exclusions}
    for inc in inclusions:
        problems += same_path_as_exclusion(inc, by_key)
        problems += lies_inside("Inclusion", inc, exclusions, "exclusion")
    return problems


def check_request(request: RestoreRequest) -> list[str]:
    """Every value rule an R1 body breaks, one message each."""
    problems: list[str] = []
    if request.destination_path is not None:
        problem = path_problem("destination_path", request.destination_path)
        if problem is not None:
            problems.append(problem)
    secret = request.encrypted_password_hex
    if secret is not None and not _HEX.fullmatch("".join(secret.split())):
        problems.append("encrypted_password_hex must be hexadecimal digits (or null).")
    return problems + check_selection(request.inclusions, request.exclusions)


# -- state changes ----------------------------------------------------------------------------


# What an R4 PATCH (or a worker) reports; ``None`` means "not reported".
RestoreUpdate = RunUpdate[RestoreState, ErrorReport]


RESTORE_RUNS: RunKind[Restore, RestoreError, RestoreState] = RunKind(
    machine=RESTORE_MACHINE,
    repository=RestoreRepository,
    record_event=record_restore_event,
    not_the_agent=(
        "Progress and results may only be reported by the restore's destination agent, with "
        "its own token (A9)."
    ),
    # The source vault's password, handed to another agent, is kept no longer than needed.
    final_values={"encrypted_password_hex": None},
)


# -- the service ------------------------------------------------------------------------------


class RestoreService(RunService[Restore, RestoreError, RestoreState]):
    """Use cases of the restores resource, for the API: the start here, the rest shared."""

    kind = RESTORE_RUNS

    def __init__(
        self,
        db: Database,
        dispatcher: Dispatcher | None = None,
        roots: RootsPolicy = NO_POLICY,
    ) -> None:
        super().__init__(db, dispatcher)
        self.roots = roots

    # -- R1 ---------------------------------------------------------------------------------
    def start(self, project_id: str, request: RestoreRequest) -> Restore:
        """Record a new restore (committed) and only then hand it to a worker."""
        problems = check_request(request)
        if problems:
            raise InvalidInput("Validation failed.", problems)
        return self.record_and_publish(lambda session: self._insert(session, project_id, request))

    def _insert(self, session: Session, project_id: str, request: RestoreRequest) -> Restore:
        backup = (
            BackupRepository(session).get(request.backup_id, project_id)
            if storable(request.backup_id)
            else None
        )
        if backup is None:
            raise NotFound("Backup not found.")
        destination = live_agent(session, project_id, request.destination_agent_id)
        source = session.get(Agent, backup.agent_id)
        if request.destination_path is None and not (
            destination.id == backup.agent_id
            or (source is not None and source.host_machine_id == destination.host_machine_id)
        ):
            raise InvalidInput(
                "Validation failed.",
                [
                    "destination_path may be null (original locations) only when the "
                    "destination agent is on the host that made the backup."
                ],
            )
        self._require_in_roots(session, request, destination, backup.configuration_id)
        if not backup.restorable or backup.snapshot_id is None:
            raise Conflict(f"Backup {backup.id} is {backup.state} and not restorable.")
        handed_over = None
        if destination.vault_id != backup.vault_id:
            handed_over = cross_agent_restores.check_start(
                session, backup.vault_id, destination, request.encrypted_password_hex
            )
        values = new_run_values(
            project_id,
            RestoreState.START_REQUESTED.value,
            source_agent_id=backup.agent_id,
            **backup_values(backup),
            destination_agent_id=destination.id,
            destination_path=request.destination_path,
            overwrite_files=request.overwrite_files,
            inclusions=[{"type": i.type, "path": i.path} for i in request.inclusions],
            exclusions=[{"type": e.type, "path": e.path} for e in request.exclusions],
            encrypted_password_hex=handed_over,
        )
        encrypted = vault_encrypted(session, backup.vault_id)
        return RESTORE_RUNS.insert_start(session, values, vault_encrypted=encrypted)

    def _require_in_roots(
        self, session: Session, request: RestoreRequest, agent: Agent, configuration_id: str
    ) -> None:
        """What the restore writes lies in the destination agent's roots: the destination, or
        (to the original locations) the selected paths, else the configuration's inclusions;
        the worker checks the snapshot's own paths again when it runs."""
        roots = self.roots.for_agent(agent.allowed_roots)
        if request.destination_path is not None:
            targets = [("destination_path", request.destination_path)]
        else:
            paths = [item.path for item in request.inclusions]
            if not paths:
                config = session.get(Configuration, configuration_id)
                stored = (config.inclusions if config is not None else None) or []
                paths = [str(item.get("path", "/")) for item in stored]
            targets = [("Original location", path) for path in paths or ["/"]]
        problems = [problem for label, path in targets if (problem := roots.refusal(label, path))]
        if problems:
            raise InvalidInput("Validation failed.", problems)
