"""Names to ids: the commands take an agent or a configuration by its id or by its name."""

from __future__ import annotations

import re
from typing import Any

from cloudbackup.client.commands.session import Fail, Session

UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def pick(kind: str, text: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The item whose id or name is ``text`` (exact, then case-insensitive, then id prefix)."""
    for match in (
        lambda i: i.get("id") == text,
        lambda i: i.get("name") == text,
        lambda i: str(i.get("name", "")).lower() == text.lower(),
        lambda i: len(text) >= 4 and str(i.get("id", "")).startswith(text),
    ):
        found = [i for i in items if match(i)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            ids = ", ".join(str(i.get("id")) for i in found)
            raise Fail(f"{text!r} matches several {kind}s ({ids}); give the id")
    raise Fail(f"no {kind} with id or name {text!r}")


def config_id_of(s: Session, text: str) -> str:
    """The id of the configuration ``text`` names (asks the API only for a name)."""
    if UUID.fullmatch(text):
        return text
    return str(pick("configuration", text, s.api.list_configurations()["configurations"])["id"])


def agent_id_of(s: Session, text: str) -> str:
    """The id of the agent ``text`` names (asks the API only for a name)."""
    if UUID.fullmatch(text):
        return text
    return str(pick("agent", text, s.api.list_agents()["agents"])["id"])
