"""The backups pages: the filtered list, one backup with its live parts, start and stop."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter

from cloudbackup.client import format as fmt
from cloudbackup.client.api import ApiError, AsyncApiClient
from cloudbackup.console import runs
from cloudbackup.console.forms import posted_form
from cloudbackup.console.views import AnyRequest, LoggedIn, Query, api_for, names, redirect, render
from cloudbackup.domain.run_states import BackupState

StateQuery = Annotated[str, QueryParameter(name="state", required=False)]
Filters = NamedDependency[dict[str, str]]
# The state filter's choices: the state machine's states, scheduled starts last.
BACKUP_STATES = (
    *(s.value for s in BackupState if s != BackupState.START_SCHEDULED),
    BackupState.START_SCHEDULED.value,
)
MAX_ROWS = 50
MAX_PAGES = 5  # B2 has no state/agent filter: read at most this many pages of 100 to filter
MAX_PROGRESS_LOOKUPS = 10


async def matching_backups(
    api: AsyncApiClient, *, state: str, agent: str, configuration: str
) -> list[dict[str, Any]]:
    """The newest backups matching the filters, with progress for the running ones."""
    rows: list[dict[str, Any]] = []
    marker: str | None = None
    for _ in range(MAX_PAGES):
        page = await api.list_backups(
            marker=marker, limit=100, configuration_id=configuration or None
        )
        items = page["backups"]
        rows += [
            b
            for b in items
            if (not state or b.get("state") == state)
            and (not agent or fmt.ref_id(b.get("agent")) == agent)
        ]
        more = any(link.get("rel") == "next" for link in page.get("links") or [])
        if len(rows) >= MAX_ROWS or not more or not items:
            break
        marker = items[-1]["id"]
    rows = rows[:MAX_ROWS]
    running = [r for r in rows if r.get("state") in runs.RUNNING_STATES]
    found = await asyncio.gather(
        *(runs.latest_progress(api, "backups", r["id"]) for r in running[:MAX_PROGRESS_LOOKUPS])
    )
    for row, progress in zip(running, found, strict=False):
        row["progress"] = progress
    for row in rows:
        row["final"] = runs.is_final("backups", row.get("state"))
    return rows


def _filters(
    state_filter: StateQuery = "", agent: Query = "", configuration: Query = ""
) -> dict[str, str]:
    """The backups list's filters, from its query (each one optional, empty for any)."""
    return {"state": state_filter, "agent": agent, "configuration": configuration}


async def _backup_list(api: AsyncApiClient, filters: dict[str, str]) -> dict[str, Any]:
    """The backups page's rows (``filters``: state, agent, configuration) and the names in them."""
    (config_names, agent_names), rows = await asyncio.gather(
        names(api),
        matching_backups(
            api,
            state=filters["state"],
            agent=filters["agent"],
            configuration=filters["configuration"],
        ),
    )
    return {"rows": rows, "config_names": config_names, "agent_names": agent_names}


async def _backup_context(api: AsyncApiClient, backup_id: str) -> dict[str, Any]:
    backup = await api.get_backup(backup_id)
    events = await runs.all_events(api, "backups", backup_id)
    config_names, agent_names = await names(api)
    errors = None
    if (backup.get("errors") or {}).get("count"):
        errors = await api.backup_errors(backup_id)
    drills = (await api.backup_drills(backup_id, limit=1)).get("drills") or []
    return {
        "backup": backup,
        "last_drill": drills[0] if drills else None,
        "drill_schedule": await _drill_schedule(api, fmt.ref_id(backup.get("configuration"))),
        **runs.run_view("backups", backup, events, errors),
        "config_name": config_names.get(fmt.ref_id(backup.get("configuration")) or ""),
        "agent_name": agent_names.get(fmt.ref_id(backup.get("agent")) or ""),
    }


async def _drill_schedule(api: AsyncApiClient, configuration_id: str | None) -> Any:
    """The configuration's drill schedule, or None when it has none (or is gone)."""
    if not configuration_id:
        return None
    try:
        return await api.drill_schedule(configuration_id)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


class BackupPages(runs.RunPages, kind="backups", stop_notice="stopping"):
    async def read(self, api: AsyncApiClient, run_id: str) -> dict[str, Any]:
        return await _backup_context(api, run_id)

    @get("/", dependencies={"filters": Provide(_filters, sync_to_thread=False)})
    async def backups(
        self, request: AnyRequest, user: LoggedIn, filters: Filters, notice: Query = ""
    ) -> Response[str]:
        return await render(
            request,
            user,
            "backups.html",
            lambda api: _backup_list(api, filters),
            active="backups",
            notice=notice,
            filters=filters,
            query=urlencode({k: v for k, v in filters.items() if v}),
            states=BACKUP_STATES,
        )

    @get("/rows", dependencies={"filters": Provide(_filters, sync_to_thread=False)})
    async def backup_rows(
        self, request: AnyRequest, user: LoggedIn, filters: Filters
    ) -> Response[str]:
        return await render(
            request, user, "_backup_rows.html", lambda api: _backup_list(api, filters)
        )

    @post("/")
    async def start_backup(self, request: AnyRequest, user: LoggedIn) -> Response[Any]:
        form = await posted_form(request, user)
        async with api_for(request, user) as api:
            backup = await api.start_backup(str(form.get("configuration_id") or ""))
        return redirect(f"/console/backups/{backup['id']}", notice="started")
