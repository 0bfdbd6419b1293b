"""Bodies of the operator's `/v2/admin` API that are not JSON Patches."""

from __future__ import annotations

from typing import Any

import msgspec

from cloudbackup.domain.roots import AgentRootsView


class RootsBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``PUT /v2/admin/agents/{agent_id}/roots``: the folders, or null for the fallback."""

    roots: list[str] | None


def roots_out(view: AgentRootsView) -> dict[str, Any]:
    return {
        "agent_id": view.agent_id,
        "project_id": view.project_id,
        "roots": view.roots,
        "effective_roots": list(view.effective.roots),
        "effective_from": view.effective.origin,
        "protected": list(view.effective.protected),
    }
