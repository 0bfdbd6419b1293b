"""Names to ids: the commands take an agent or a configuration by its id, its name or a unique
prefix of its id, and a backup or a restore by its id or a unique prefix of it (the 8-character
ids that `events` and the lists print)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from cloudbackup.client.commands.session import Fail, Session

UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
MIN_PREFIX = 4
# Backups and restores have no name and their lists are paged: a prefix is looked up among the
# newest this many pages of 100 (the same bound as `backups list --state`).
MAX_PAGES = 10


def _is_prefix(text: str, item: dict[str, Any]) -> bool:
    return len(text) >= MIN_PREFIX and str(item.get("id", "")).lower().startswith(text.lower())


def _several(kind: str, text: str, found: list[dict[str, Any]], label: str) -> Fail:
    listed = ", ".join(f"{i.get('id')} ({i.get(label) or '-'})" for i in found)
    return Fail(f"{text!r} matches several {kind}s: {listed}; give more of the id")


def pick(kind: str, text: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The item whose id or name is ``text``: exact id, then exact name, then case-insensitive
    name, then unique id prefix (at least 4 characters). Several matches at the first step
    that has any fail with their ids and names."""
    steps: list[Callable[[dict[str, Any]], bool]] = [
        lambda i: i.get("id") == text,
        lambda i: i.get("name") == text,
        lambda i: str(i.get("name", "")).lower() == text.lower(),
        lambda i: _is_prefix(text, i),
    ]
    for match in steps:
        found = [i for i in items if match(i)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise _several(kind, text, found, "name")
    raise Fail(f"no {kind} with id or name {text!r}")


def config_id_of(s: Session, text: str) -> str:
    """The id of the configuration ``text`` names (asks the API only for a name or a prefix)."""
    if UUID.fullmatch(text):
        return text
    return str(pick("configuration", text, s.api.list_configurations()["configurations"])["id"])


def agent_id_of(s: Session, text: str) -> str:
    """The id of the agent ``text`` names (asks the API only for a name or a prefix)."""
    if UUID.fullmatch(text):
        return text
    return str(pick("agent", text, s.api.list_agents()["agents"])["id"])


def backup_id_of(s: Session, text: str) -> str:
    """The id of the backup ``text`` is (a full id, asked for nothing) or begins."""
    return _run_id_of("backup", text, s.api.list_backups)


def restore_id_of(s: Session, text: str) -> str:
    """The id of the restore ``text`` is (a full id, asked for nothing) or begins."""
    return _run_id_of("restore", text, s.api.list_restores)


def _run_id_of(kind: str, text: str, list_page: Callable[..., Any]) -> str:
    if UUID.fullmatch(text):
        return text
    if len(text) < MIN_PREFIX:
        raise Fail(f"no {kind} with id {text!r}; give at least {MIN_PREFIX} characters of an id")
    found: list[dict[str, Any]] = []
    marker: str | None = None
    searched_all = False
    for _ in range(MAX_PAGES):
        page = list_page(marker=marker, limit=100)
        items = page[f"{kind}s"]
        found += [i for i in items if _is_prefix(text, i)]
        if not items or not any(link.get("rel") == "next" for link in page.get("links") or []):
            searched_all = True
            break
        marker = items[-1]["id"]
    if len(found) > 1:
        raise _several(kind, text, found, "state")
    if found:
        return str(found[0]["id"])
    if searched_all:
        raise Fail(f"no {kind} with id {text!r}")
    raise Fail(
        f"no {kind} among the newest {MAX_PAGES * 100} has an id beginning {text!r}; "
        "give the full id"
    )
