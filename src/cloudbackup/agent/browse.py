"""A browse request handed to this agent (B5: a directory of one of its backups, A10: one of
its host): list it here and PUT the children to the server, which describes, limits and stores
them for B6/A11. The server judged the roots and the backup before handing it over."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

from cloudbackup.agent.session import AgentSession, ApiRefused
from cloudbackup.engine import Vault
from cloudbackup.engine.listing import Child, host_children, snapshot_children

log = logging.getLogger("cloudbackup.agent")


def list_for(item: dict[str, Any], vault: Callable[[], Vault]) -> list[Child] | None:
    """The children the request asks for; None when there is no such directory or it cannot be
    listed."""
    directory = base64.b64decode(str(item["path_encoded"]))
    limit = int(item.get("limit") or 1000)
    try:
        if item.get("kind") == "host":
            return host_children(directory, limit)
        snapshot_id = item.get("snapshot_id")
        if snapshot_id is None:
            return None
        children = snapshot_children(vault().iter_entries(int(snapshot_id)), directory)
        return None if children is None else children[:limit]
    except Exception as exc:  # the answer says so: the client is polling for it
        log.warning("browse request %s could not be listed: %s", item.get("id"), exc)
        return None


def answer_browse(session: AgentSession, item: dict[str, Any], vault: Callable[[], Vault]) -> str:
    """List and answer one request; ``answered`` or ``failed`` (as the server stored it)."""
    children = list_for(item, vault)
    body = {
        "succeeded": children is not None,
        "entries": [
            {
                "name_encoded": base64.b64encode(child.name).decode("ascii"),
                "kind": child.kind,
                "bytes": child.size,
            }
            for child in children or []
        ],
    }
    url = session.agent_path("browse-requests", str(item["id"]), "result")
    response = session.request("PUT", url, json=body)
    if response.status_code == 409:
        return "noop"  # answered already (a re-published request)
    if not response.is_success:
        raise ApiRefused(response)
    return "answered" if children is not None else "failed"
