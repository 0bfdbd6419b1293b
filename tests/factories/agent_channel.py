"""Reading a remote agent's channel as the tests' agent does: the next work item."""

from __future__ import annotations

from typing import Any

from cloudbackup.agent.session import AgentSession

# Items that only tell the agent to read its working document (A7) again: not work.
DOCUMENT_CHANGED = "configuration_changed"


def next_work_item(
    session: AgentSession, channel: str, marker: str = "0"
) -> tuple[str, dict[str, Any]]:
    """The one work item after ``marker`` (a configuration's ``configuration_changed`` items
    are passed over) and its marker."""
    for _ in range(5):
        params = {"wait": "1", "marker": marker}
        entries = session.checked("GET", channel, params=params).json()["items"]
        work = [e for e in entries if e["item"].get("type") != DOCUMENT_CHANGED]
        if work:
            [entry] = work
            return str(entry["marker"]), entry["item"]
        marker = str(entries[-1]["marker"]) if entries else marker
    raise AssertionError(f"no work item in {channel} after {marker}")
