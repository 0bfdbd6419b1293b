"""Which host paths hosted execution may touch for one agent: its roots, and never the service's
own files.

An agent's roots are set by the operator (``PUT /v2/admin/agents/{agent_id}/roots``, `cloudbackup
roots set`); an agent without its own falls back to ``CLOUDBACKUP_ALLOWED_ROOTS``. No roots at
all means nothing is allowed. Whatever the roots, the data folder, the database file, the vault
folders and the key folder are refused, also when a path reaches them through a link.

Paths are compared component by component after ``..`` is resolved. The API judges the written
path (and, on its own filesystem, where it leads); a worker judges the real filesystem again when
it runs, because roots can change after a configuration was accepted.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

from sqlalchemy.orm import Session

from cloudbackup.domain.errors import InvalidInput, NotFound
from cloudbackup.settings import PREFIX, Settings
from cloudbackup.store.db import Database
from cloudbackup.store.tables import Agent

ROOTS_SETTING = f"{PREFIX}ALLOWED_ROOTS"
ROOTS_COMMAND = "cloudbackup roots set <agent_id> <folder>..."
ROOTS_API = "PUT /v2/admin/agents/{agent_id}/roots"
NO_ROOTS = (
    "No allowed roots: this agent may not touch any host path. The operator sets them with "
    f"{ROOTS_SETTING} (for every agent) or `{ROOTS_COMMAND}` ({ROOTS_API})."
)
SERVICE_FILES = (
    "reaches the service's own files (its data folder, database, vaults or vault keys), "
    "which are never backed up, browsed or restored onto"
)
MAX_ROOTS = 64
MAX_ROOT_LENGTH = 4096


def normalize(path: str) -> str:
    """An absolute path with ``..``, ``.``, ``//`` and a trailing ``/`` resolved away."""
    return "/" + posixpath.normpath("/" + path.lstrip("/")).lstrip("/")


def inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or lies below it (both normalized; ``/web`` is not in ``/w``)."""
    return folder == "/" or path == folder or path.startswith(folder + "/")


def root_problems(roots: Sequence[str]) -> list[str]:
    """Why a list of roots cannot be stored (empty when it can)."""
    problems: list[str] = []
    if len(roots) > MAX_ROOTS:
        problems.append(f"roots may hold at most {MAX_ROOTS} folders.")
    for root in roots:
        if not root.startswith("/"):
            problems.append(f"Root {root!r} must be an absolute path.")
        elif len(root) > MAX_ROOT_LENGTH or "\x00" in root:
            problems.append(f"Root {root[:80]!r} is too long or holds a NUL.")
    return problems


def normalized_roots(roots: Iterable[str]) -> list[str]:
    """Stored form: normalized, without duplicates, in the given order."""
    seen: dict[str, None] = {}
    for root in roots:
        seen.setdefault(normalize(root), None)
    return list(seen)


def _sqlite_file(database_url: str) -> str | None:
    if not database_url.startswith("sqlite"):
        return None
    path = database_url.split(":///", 1)[1] if ":///" in database_url else ""
    path = path.split("?", 1)[0]
    return os.path.abspath(path) if path and path != ":memory:" else None


def service_paths(settings: Settings) -> tuple[str, ...]:
    """The service's own files: data folder, database file (with SQLite's side files), vault
    folders and key folder, as absolute normalized paths."""
    paths = [os.path.abspath(settings.data_dir), str(settings.resolved_vault_path)]
    database = _sqlite_file(settings.resolved_database_url)
    if database is not None:
        paths += [database + suffix for suffix in ("", "-wal", "-shm", "-journal")]
    if settings.vault_url.startswith("file://"):
        paths.append(os.path.abspath(urlparse(settings.vault_url).path or "/"))
    paths.append(str(settings.resolved_vault_key_dir))
    return tuple(dict.fromkeys(normalize(path) for path in paths))


def _forms(path: str, follow_last: bool) -> set[str]:
    """The written path and where it really leads (the last component resolved or not)."""
    written = normalize(path)
    if follow_last:
        real = os.path.realpath(written)
    else:
        parent, name = os.path.split(written)
        real = os.path.join(os.path.realpath(parent or "/"), name) if name else "/"
    return {written, normalize(real)}


def _with_real(paths: Iterable[str]) -> set[str]:
    """The paths and where each really leads."""
    forms = set(paths)
    forms.update(normalize(os.path.realpath(path)) for path in paths)
    return forms


@dataclass(frozen=True, slots=True)
class HostRoots:
    """What one agent's hosted execution may touch: ``roots`` minus the ``protected`` paths."""

    roots: tuple[str, ...]
    protected: tuple[str, ...]
    origin: str  # where the roots come from, for messages

    def protected_forms(self) -> set[str]:
        # Resolved on every check: a protected folder may itself be reached through a link.
        return _with_real(self.protected)

    def refusal(self, label: str, path: str, *, follow_last: bool = True) -> str | None:
        """Why ``path`` may not be touched (None when it may), naming ``label`` and the path.

        ``follow_last`` resolves the last component too for the roots: a backup stores a link
        there as a link, but a restore destination or a listed folder is entered through it.
        The service's own files are refused through any link, the last one too.
        """
        if not self.roots:
            return f"{label} {path!r}: {NO_ROOTS}"
        written = normalize(path)
        roots = _with_real(self.roots)
        for form in sorted(_forms(path, follow_last)):
            if not any(inside(form, root) for root in roots):
                shown = "" if form == written else f" (it leads to {form})"
                return (
                    f"{label} {path!r} lies outside the allowed roots{shown} "
                    f"({', '.join(self.roots)}; {self.origin})."
                )
        protected = self.protected_forms()
        for form in _forms(path, True) | _forms(path, False):
            if any(inside(form, p) for p in protected):
                # Which of them is not said: the tenant need not learn the operator's layout.
                return f"{label} {path!r} {SERVICE_FILES}."
        return None

    def protected_below(self, folder: str) -> list[str]:
        """The protected paths inside ``folder``, spelt below ``folder`` as written (a backup of
        ``/home/u/`` excludes ``/home/u/.cloudbackup`` even when ``/home`` is a link)."""
        written = normalize(folder)
        real = normalize(os.path.realpath(written))
        found: dict[str, None] = {}
        for path in sorted(self.protected_forms()):
            for base in (written, real):
                if path != base and inside(path, base):
                    rest = path[len(base) :].lstrip("/") if base != "/" else path.lstrip("/")
                    found.setdefault(posixpath.join(written, rest), None)
        return list(found)


class TargetGuard:
    """Judges every path a restore writes: its folder as it really is on disk (a link already
    there may lead anywhere), the path itself unresolved (files are placed by a rename, which
    replaces a link instead of following it). Folders are resolved once each."""

    def __init__(self, roots: HostRoots) -> None:
        self._roots = _with_real(roots.roots)
        self._protected = roots.protected_forms()
        self._real_parents: dict[str, str] = {}
        self.refused: dict[str, str] = {}  # target -> why, in the order met

    def allows(self, target: str) -> bool:
        if target in self.refused:
            return False
        written = normalize(target)
        parent, name = os.path.split(written)
        real_parent = self._real_parents.get(parent)
        if real_parent is None:
            real_parent = self._real_parents[parent] = os.path.realpath(parent or "/")
        real = normalize(os.path.join(real_parent, name))
        for form in (written,) if real == written else (written, real):
            if not any(inside(form, root) for root in self._roots):
                self.refused[target] = f"Not restored: it leads to {form}, outside the roots."
                return False
            if any(inside(form, path) for path in self._protected):
                self.refused[target] = f"Not restored: it {SERVICE_FILES}."
                return False
        return True


@dataclass(frozen=True, slots=True)
class RootsPolicy:
    """The service-wide part: the fallback roots and the service's own paths (from settings)."""

    fallback: tuple[str, ...]
    protected: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> RootsPolicy:
        return cls(settings.allowed_root_list, service_paths(settings))

    def for_agent(self, agent_roots: Sequence[str] | None) -> HostRoots:
        """An agent's own roots win (an empty list allows nothing); None falls back."""
        if agent_roots is not None:
            return HostRoots(tuple(agent_roots), self.protected, "the agent's roots")
        return HostRoots(self.fallback, self.protected, ROOTS_SETTING)


# What a service built without a policy has: no roots (nothing is allowed), nothing protected.
NO_POLICY = RootsPolicy((), ())


# -- the operator's side ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentRootsView:
    """An agent's own roots (None: the fallback) and what its hosted execution may touch."""

    agent_id: str
    project_id: str
    roots: list[str] | None
    effective: HostRoots


class AgentRootsService:
    """Read and set an agent's roots: the operator's business (admin API and `cloudbackup
    roots`), never a tenant's, because roots decide which of the host's files a tenant reaches."""

    def __init__(self, db: Database, policy: RootsPolicy) -> None:
        self.db = db
        self.policy = policy

    def get(self, agent_id: str) -> AgentRootsView:
        with self.db.transaction() as session:
            return self._view(_agent(session, agent_id))

    def set(self, agent_id: str, roots: Sequence[str] | None) -> AgentRootsView:
        """Replace the agent's roots; None returns it to the fallback, [] allows nothing."""
        if roots is not None:
            problems = root_problems(roots)
            if problems:
                raise InvalidInput("Validation failed.", problems)
        with self.db.transaction() as session:
            agent = _agent(session, agent_id)
            agent.allowed_roots = None if roots is None else normalized_roots(roots)
            session.add(agent)
            view = self._view(agent)
        return view

    def _view(self, agent: Agent) -> AgentRootsView:
        own = None if agent.allowed_roots is None else list(agent.allowed_roots)
        return AgentRootsView(agent.id, agent.project_id, own, self.policy.for_agent(own))


def _agent(session: Session, agent_id: str) -> Agent:
    agent = session.get(Agent, agent_id) if "\x00" not in agent_id else None
    if agent is None or agent.deleted:
        raise NotFound("Agent not found.")
    return agent
