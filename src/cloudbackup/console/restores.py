"""The restores pages: the restore form of a backup, the list, one restore with its live parts,
start and stop."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get, post
from litestar.datastructures import FormMultiDict
from litestar.params import FromPath

from cloudbackup.client import format as fmt
from cloudbackup.client.api import ApiError, AsyncApiClient, restore_body
from cloudbackup.client.drafts import path_items
from cloudbackup.console import runs
from cloudbackup.console.forms import Problem, form_page, posted_form
from cloudbackup.console.session import ConsoleUser
from cloudbackup.console.views import AnyRequest, LoggedIn, Query, api_for, names, redirect, render


def _form_values(form: FormMultiDict) -> dict[str, Any]:
    """What the restore form sent, kept as typed to show the form again if the API refuses it."""
    return {
        "backup_id": str(form.get("backup_id") or ""),
        "destination_agent_id": str(form.get("destination_agent_id") or ""),
        "destination_path": str(form.get("destination_path") or "").strip(),
        "original": form.get("original") == "on",
        "overwrite": form.get("overwrite") == "on",
        "inclusions": str(form.get("inclusions") or ""),
        "exclusions": str(form.get("exclusions") or ""),
    }


def _body(values: dict[str, Any]) -> dict[str, Any]:
    """The RS1 body of the form's ``values`` (no path when restoring to the original place)."""
    return restore_body(
        values["backup_id"],
        values["destination_agent_id"],
        None if values["original"] else values["destination_path"],
        overwrite=bool(values["overwrite"]),
        inclusions=path_items(str(values["inclusions"])),
        exclusions=path_items(str(values["exclusions"])),
    )


async def _restore_form_page(
    request: AnyRequest,
    user: ConsoleUser,
    api: AsyncApiClient,
    backup: dict[str, Any],
    values: dict[str, Any],
    *,
    status: int = 200,
    problem: Problem | None = None,
) -> Response[str]:
    return await form_page(
        request,
        user,
        api,
        "restore_form.html",
        active="restores",
        status=status,
        problem=problem,
        backup=backup,
        values=values,
    )


async def _restore_rows(api: AsyncApiClient) -> tuple[list[dict[str, Any]], bool]:
    try:
        rows = (await api.list_restores(limit=50))["restores"]
    except ApiError as exc:
        if exc.missing_endpoint:
            return [], True  # this server has no restores API (yet)
        raise
    for row in rows:
        row["final"] = runs.is_final("restores", row.get("state"))
    return rows, False


async def _restore_list(api: AsyncApiClient) -> dict[str, Any]:
    rows, missing = await _restore_rows(api)
    _, agent_names = await names(api)
    return {"rows": rows, "missing": missing, "agent_names": agent_names}


async def _restore_context(api: AsyncApiClient, restore_id: str) -> dict[str, Any]:
    restore = await api.get_restore(restore_id)
    try:
        events = await runs.all_events(api, "restores", restore_id)
    except ApiError:
        events = []
    errors = None
    if (restore.get("errors") or {}).get("count"):
        errors = await api.restore_errors(restore_id)
    _, agent_names = await names(api)
    return {
        "restore": restore,
        **runs.run_view("restores", restore, events, errors),
        "agent_names": agent_names,
    }


class RestoreFormPage(Controller):
    """The restore form of a backup: it posts to :class:`RestorePages`."""

    @get("/backups/{backup_id:str}/restore")
    async def restore_form(
        self, request: AnyRequest, user: LoggedIn, backup_id: FromPath[str]
    ) -> Response[str]:
        async with api_for(request, user) as api:
            backup = await api.get_backup(backup_id)
            values: dict[str, Any] = {
                "backup_id": backup_id,
                "destination_agent_id": fmt.ref_id(backup.get("agent")) or "",
                "destination_path": "",
                "original": False,
                "overwrite": False,
                "inclusions": "",
                "exclusions": "",
            }
            return await _restore_form_page(request, user, api, backup, values)


class RestorePages(runs.RunPages, kind="restores", stop_notice="restore-stopping"):
    async def read(self, api: AsyncApiClient, run_id: str) -> dict[str, Any]:
        return await _restore_context(api, run_id)

    @post("/")
    async def start_restore(self, request: AnyRequest, user: LoggedIn) -> Response[Any]:
        values = _form_values(await posted_form(request, user))
        async with api_for(request, user) as api:
            try:
                restore = await api.start_restore(_body(values))
            except ApiError as exc:
                if exc.missing_endpoint or exc.status >= 500:
                    raise
                backup = await api.get_backup(str(values["backup_id"]))
                return await _restore_form_page(
                    request, user, api, backup, values, status=exc.status, problem=Problem.of(exc)
                )
        return redirect(f"/console/restores/{restore['id']}", notice="restore")

    @get("/")
    async def restores(
        self, request: AnyRequest, user: LoggedIn, notice: Query = ""
    ) -> Response[str]:
        return await render(
            request, user, "restores.html", _restore_list, active="restores", notice=notice
        )

    @get("/rows")
    async def restore_rows(self, request: AnyRequest, user: LoggedIn) -> Response[str]:
        return await render(request, user, "_restore_rows.html", _restore_list)
