"""The web console under ``/console``: server-rendered pages over the same API the CLI uses.

Each page calls the v2 API in-process (``httpx.ASGITransport`` on this very app) with the token
from the console cookie, so the console has exactly the API's rules, roles and messages and
none of its own. Forms post back here (CSRF-checked), and are answered with a redirect (303), or
with the form again and the API's reasons when it refused. A little JavaScript (static/console.js)
refreshes the parts marked ``data-live`` while a run is going; without it the pages still work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, cast
from urllib.parse import urlencode

import httpx
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect

from cloudbackup.client import format as fmt
from cloudbackup.client.api import ApiError, AsyncApiClient, Unreachable, restore_body
from cloudbackup.client.drafts import DraftError, path_items
from cloudbackup.console import pages
from cloudbackup.console.render import SECURITY_HEADERS, page, static_file
from cloudbackup.console.session import (
    COOKIE,
    COOKIE_MAX_AGE,
    COOKIE_PATH,
    CSRF_FIELD,
    Can,
    ConsoleUser,
    CrossSiteRequest,
    NotLoggedIn,
    check_form,
    check_origin,
    current_user,
    lookup,
)
from cloudbackup.domain.errors import DomainError, status_of

AnyRequest = Request[Any, Any, Any]
Query = Annotated[str, QueryParameter(required=False)]
StateQuery = Annotated[str, QueryParameter(name="state", required=False)]
NOTICES = {
    "started": "Backup started.",
    "stopping": "Stop requested: the backup ends within a few seconds.",
    "created": "Configuration created.",
    "saved": "Configuration saved.",
    "deleted": "Configuration deleted.",
    "restore": "Restore started.",
    "restore-stopping": "Stop requested: the restore ends within a few seconds.",
    "paused": "Queue paused.",
    "resumed": "Queue resumed.",
}
NAV = (
    ("backups", "/console/backups", "Backups"),
    ("configurations", "/console/configurations", "Configurations"),
    ("agents", "/console/agents", "Agents"),
    ("restores", "/console/restores", "Restores"),
    ("queues", "/console/queues", "Queues"),
)


@asynccontextmanager
async def api_for(request: AnyRequest, user: ConsoleUser) -> AsyncIterator[AsyncApiClient]:
    """An API client that calls this app in-process, as the logged-in user."""
    base = str(request.base_url).rstrip("/")
    transport = httpx.ASGITransport(app=cast(Any, request.app))
    async with httpx.AsyncClient(transport=transport, base_url=base) as http:
        yield AsyncApiClient(http, base, user.project_id, user.secret)


def _redirect(path: str, **query: str) -> Redirect:
    target = f"{path}?{urlencode(query)}" if query else path
    return Redirect(path=target, status_code=303, headers=dict(SECURITY_HEADERS))


def _local(target: str | None) -> str:
    """A post-login destination inside the console only (no open redirect)."""
    if target and target.startswith("/console/") and not target.startswith("//"):
        return target
    return "/console/backups"


def _view(
    request: AnyRequest,
    user: ConsoleUser | None,
    template: str,
    *,
    active: str = "",
    status: int = 200,
    notice: Query = "",
    **context: Any,
) -> Response[str]:
    return page(
        template,
        status,
        user=user,
        can=user.can if user else Can(),
        csrf_field=CSRF_FIELD,
        nav=NAV,
        active=active,
        notice=NOTICES.get(notice or ""),
        path=request.url.path,
        **context,
    )


async def _render(
    request: AnyRequest,
    template: str,
    load: Callable[[AsyncApiClient], Awaitable[dict[str, Any]]],
    **view: Any,
) -> Response[str]:
    """The logged-in user's page ``template`` with what ``load`` reads from the API."""
    user = await current_user(request)
    async with api_for(request, user) as api:
        context = await load(api)
    return _view(request, user, template, **view, **context)


async def _post_action(
    request: AnyRequest,
    act: Callable[[AsyncApiClient], Awaitable[object]],
    target: str,
    **query: str,
) -> Redirect:
    """A form button that changes one thing: CSRF-checked, ``act`` on the API, then redirect."""
    user = await current_user(request)
    check_form(request, user, await request.form())
    async with api_for(request, user) as api:
        await act(api)
    return _redirect(target, **query)


# -- failures: HTML here, the API's own JSON handlers stay in charge of /v2 ----------------------
def _to_login(request: AnyRequest, _: NotLoggedIn) -> Response[Any]:
    if request.headers.get("x-requested-with") == "console":
        return Response("", status_code=401, headers=dict(SECURITY_HEADERS))  # the JS reloads
    response = _redirect("/console/login", next=request.url.path)
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


def _error_page(request: AnyRequest, status: int, message: str, errors: list[str]) -> Response[str]:
    return page(
        "error.html",
        status,
        user=None,
        can=Can(),
        nav=(),
        active="",
        notice=None,
        problem=pages.Problem(status, message, errors),
        path=request.url.path,
    )


def _on_cross_site(request: AnyRequest, exc: CrossSiteRequest) -> Response[str]:
    return _error_page(request, 403, str(exc), [])


def _on_api_error(request: AnyRequest, exc: ApiError) -> Response[str]:
    return _error_page(request, exc.status, exc.message, exc.errors)


def _on_domain_error(request: AnyRequest, exc: DomainError) -> Response[str]:
    return _error_page(request, status_of(exc), exc.message, exc.errors)


def _on_http_error(request: AnyRequest, exc: HTTPException) -> Response[str]:
    return _error_page(request, exc.status_code, str(exc.detail or "Request failed."), [])


def _on_unreachable(request: AnyRequest, exc: Unreachable) -> Response[str]:
    return _error_page(request, 502, str(exc), [])


class ConsoleController(Controller):
    path = "/console"
    # The API's X-Auth-Token guard skips these routes: they check the console cookie instead.
    opt = {"public": True}
    include_in_schema = False
    exception_handlers = {
        NotLoggedIn: _to_login,
        CrossSiteRequest: _on_cross_site,
        ApiError: _on_api_error,
        DomainError: _on_domain_error,
        HTTPException: _on_http_error,
        Unreachable: _on_unreachable,
    }

    # -- log in and out ---------------------------------------------------------------------------
    @get("/")
    async def home(self) -> Redirect:
        return _redirect("/console/backups")

    @get("/login")
    async def login_form(self, request: AnyRequest, next: Query = "") -> Response[Any]:
        if await lookup(request, request.cookies.get(COOKIE, "")) is not None:
            return _redirect(_local(next))
        return _view(request, None, "login.html", next=_local(next), plain_http=_plain(request))

    @post("/login")
    async def login(self, request: AnyRequest) -> Response[Any]:
        check_origin(request)
        form = await request.form()
        secret = str(form.get("token") or "").strip()
        target = _local(str(form.get("next") or ""))
        if await lookup(request, secret) is None:
            return _view(
                request,
                None,
                "login.html",
                status=401,
                next=target,
                plain_http=_plain(request),
                problem=pages.Problem(401, "The token is invalid, expired or revoked.", []),
            )
        response = _redirect(target)
        response.set_cookie(
            Cookie(
                key=COOKIE,
                value=secret,
                path=COOKIE_PATH,
                max_age=COOKIE_MAX_AGE,
                httponly=True,
                secure=True,
                samesite="strict",
            )
        )
        return response

    @post("/logout")
    async def logout(self, request: AnyRequest) -> Response[Any]:
        user = await current_user(request)
        check_form(request, user, await request.form())
        response = _redirect("/console/login")
        response.delete_cookie(COOKIE, path=COOKIE_PATH)
        return response

    @get("/static/{name:str}", cache_control=None)
    async def static(self, name: FromPath[str]) -> Response[bytes]:
        found = static_file(name)
        if found is None:
            raise HTTPException(status_code=404, detail="Not found.")
        content, media_type = found
        return Response(
            content,
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    # -- backups -----------------------------------------------------------------------------------
    @get("/backups")
    async def backups(
        self,
        request: AnyRequest,
        state_filter: StateQuery = "",
        agent: Query = "",
        configuration: Query = "",
        notice: Query = "",
    ) -> Response[str]:
        filters = {"state": state_filter, "agent": agent, "configuration": configuration}
        return await _render(
            request,
            "backups.html",
            lambda api: _backup_list(api, filters),
            active="backups",
            notice=notice,
            filters=filters,
            query=urlencode({k: v for k, v in filters.items() if v}),
            states=pages.BACKUP_STATES,
        )

    @get("/backups/rows")
    async def backup_rows(
        self,
        request: AnyRequest,
        state_filter: StateQuery = "",
        agent: Query = "",
        configuration: Query = "",
    ) -> Response[str]:
        filters = {"state": state_filter, "agent": agent, "configuration": configuration}
        return await _render(request, "_backup_rows.html", lambda api: _backup_list(api, filters))

    @post("/backups")
    async def start_backup(self, request: AnyRequest) -> Response[Any]:
        user = await current_user(request)
        form = await request.form()
        check_form(request, user, form)
        async with api_for(request, user) as api:
            backup = await api.start_backup(str(form.get("configuration_id") or ""))
        return _redirect(f"/console/backups/{backup['id']}", notice="started")

    async def _backup_context(self, api: AsyncApiClient, backup_id: str) -> dict[str, Any]:
        backup = await api.get_backup(backup_id)
        events = await pages.all_events(api, "backups", backup_id)
        config_names, agent_names = await pages.names(api)
        errors = None
        if (backup.get("errors") or {}).get("count"):
            errors = await api.backup_errors(backup_id)
        return {
            "backup": backup,
            **_run_view("backups", backup, events, errors),
            "config_name": config_names.get(fmt.ref_id(backup.get("configuration")) or ""),
            "agent_name": agent_names.get(fmt.ref_id(backup.get("agent")) or ""),
        }

    @get("/backups/{backup_id:str}")
    async def backup(
        self, request: AnyRequest, backup_id: FromPath[str], notice: Query = ""
    ) -> Response[str]:
        return await _render(
            request,
            "backup.html",
            lambda api: self._backup_context(api, backup_id),
            active="backups",
            notice=notice,
        )

    @get("/backups/{backup_id:str}/live")
    async def backup_live(self, request: AnyRequest, backup_id: FromPath[str]) -> Response[str]:
        return await _render(
            request, "_backup_live.html", lambda api: self._backup_context(api, backup_id)
        )

    @post("/backups/{backup_id:str}/stop")
    async def stop_backup(self, request: AnyRequest, backup_id: FromPath[str]) -> Response[Any]:
        return await _post_action(
            request,
            lambda api: api.stop_backup(backup_id),
            f"/console/backups/{backup_id}",
            notice="stopping",
        )

    # -- restores ----------------------------------------------------------------------------------
    @get("/backups/{backup_id:str}/restore")
    async def restore_form(self, request: AnyRequest, backup_id: FromPath[str]) -> Response[str]:
        user = await current_user(request)
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
            return await self._restore_form_page(request, user, api, backup, values)

    async def _restore_form_page(
        self,
        request: AnyRequest,
        user: ConsoleUser,
        api: AsyncApiClient,
        backup: dict[str, Any],
        values: dict[str, Any],
        *,
        status: int = 200,
        problem: pages.Problem | None = None,
    ) -> Response[str]:
        agents = (await api.list_agents())["agents"]
        return _view(
            request,
            user,
            "restore_form.html",
            active="restores",
            status=status,
            backup=backup,
            agents=agents,
            values=values,
            problem=problem,
        )

    @post("/restores")
    async def start_restore(self, request: AnyRequest) -> Response[Any]:
        user = await current_user(request)
        form = await request.form()
        check_form(request, user, form)
        values: dict[str, Any] = {
            "backup_id": str(form.get("backup_id") or ""),
            "destination_agent_id": str(form.get("destination_agent_id") or ""),
            "destination_path": str(form.get("destination_path") or "").strip(),
            "original": form.get("original") == "on",
            "overwrite": form.get("overwrite") == "on",
            "inclusions": str(form.get("inclusions") or ""),
            "exclusions": str(form.get("exclusions") or ""),
        }
        async with api_for(request, user) as api:
            try:
                restore = await api.start_restore(
                    restore_body(
                        values["backup_id"],
                        values["destination_agent_id"],
                        None if values["original"] else values["destination_path"],
                        overwrite=bool(values["overwrite"]),
                        inclusions=path_items(str(values["inclusions"])),
                        exclusions=path_items(str(values["exclusions"])),
                    )
                )
            except ApiError as exc:
                if exc.missing_endpoint or exc.status >= 500:
                    raise
                backup = await api.get_backup(str(values["backup_id"]))
                return await self._restore_form_page(
                    request,
                    user,
                    api,
                    backup,
                    values,
                    status=exc.status,
                    problem=pages.Problem.of(exc),
                )
        return _redirect(f"/console/restores/{restore['id']}", notice="restore")

    @get("/restores")
    async def restores(self, request: AnyRequest, notice: Query = "") -> Response[str]:
        return await _render(
            request, "restores.html", self._restore_list, active="restores", notice=notice
        )

    @get("/restores/rows")
    async def restore_rows(self, request: AnyRequest) -> Response[str]:
        return await _render(request, "_restore_rows.html", self._restore_list)

    async def _restore_list(self, api: AsyncApiClient) -> dict[str, Any]:
        rows, missing = await self._restore_rows(api)
        _, agent_names = await pages.names(api)
        return {"rows": rows, "missing": missing, "agent_names": agent_names}

    async def _restore_rows(self, api: AsyncApiClient) -> tuple[list[dict[str, Any]], bool]:
        try:
            rows = (await api.list_restores(limit=50))["restores"]
        except ApiError as exc:
            if exc.missing_endpoint:
                return [], True  # this server has no restores API (yet)
            raise
        for row in rows:
            row["final"] = pages.is_final("restores", row.get("state"))
        return rows, False

    async def _restore_context(self, api: AsyncApiClient, restore_id: str) -> dict[str, Any]:
        restore = await api.get_restore(restore_id)
        try:
            events = await pages.all_events(api, "restores", restore_id)
        except ApiError:
            events = []
        errors = None
        if (restore.get("errors") or {}).get("count"):
            errors = await api.restore_errors(restore_id)
        _, agent_names = await pages.names(api)
        return {
            "restore": restore,
            **_run_view("restores", restore, events, errors),
            "agent_names": agent_names,
        }

    @get("/restores/{restore_id:str}")
    async def restore(
        self, request: AnyRequest, restore_id: FromPath[str], notice: Query = ""
    ) -> Response[str]:
        return await _render(
            request,
            "restore.html",
            lambda api: self._restore_context(api, restore_id),
            active="restores",
            notice=notice,
        )

    @get("/restores/{restore_id:str}/live")
    async def restore_live(self, request: AnyRequest, restore_id: FromPath[str]) -> Response[str]:
        return await _render(
            request, "_restore_live.html", lambda api: self._restore_context(api, restore_id)
        )

    @post("/restores/{restore_id:str}/stop")
    async def stop_restore(self, request: AnyRequest, restore_id: FromPath[str]) -> Response[Any]:
        return await _post_action(
            request,
            lambda api: api.stop_restore(restore_id),
            f"/console/restores/{restore_id}",
            notice="restore-stopping",
        )

    # -- configurations ----------------------------------------------------------------------------
    @get("/configurations")
    async def configurations(self, request: AnyRequest, notice: Query = "") -> Response[str]:
        user = await current_user(request)
        async with api_for(request, user) as api:
            configs, (_, agent_names) = await asyncio.gather(
                api.list_configurations(), pages.names(api)
            )
        return _view(
            request,
            user,
            "configurations.html",
            active="configurations",
            notice=notice,
            configurations=configs["configurations"],
            agent_names=agent_names,
        )

    async def _form_page(
        self,
        request: AnyRequest,
        user: ConsoleUser,
        api: AsyncApiClient,
        form: pages.ConfigForm,
        *,
        config_id: str | None = None,
        status: int = 200,
        problem: pages.Problem | None = None,
    ) -> Response[str]:
        agents = (await api.list_agents())["agents"]
        return _view(
            request,
            user,
            "configuration_form.html",
            active="configurations",
            status=status,
            form=form,
            config_id=config_id,
            agents=agents,
            problem=problem,
            time_zones=pages.time_zones(),
            weekdays=pages.WEEKDAY_CHOICES,
        )

    @get("/configurations/new")
    async def new_configuration(self, request: AnyRequest) -> Response[str]:
        user = await current_user(request)
        async with api_for(request, user) as api:
            agents = (await api.list_agents())["agents"]
            form = pages.ConfigForm(agent_id=agents[0]["id"] if len(agents) == 1 else "")
            return await self._form_page(request, user, api, form)

    @post("/configurations")
    async def create_configuration(self, request: AnyRequest) -> Response[Any]:
        user = await current_user(request)
        raw = await request.form()
        check_form(request, user, raw)
        form = pages.ConfigForm.from_form(raw)
        async with api_for(request, user) as api:
            try:
                created = await api.create_configuration(form.body())
            except DraftError as exc:
                problem = pages.Problem(400, str(exc))
                return await self._form_page(request, user, api, form, status=400, problem=problem)
            except ApiError as exc:
                if exc.status >= 500:
                    raise
                problem = pages.Problem.of(exc)
                return await self._form_page(
                    request, user, api, form, status=exc.status, problem=problem
                )
        return _redirect(f"/console/configurations/{created['id']}", notice="created")

    @get("/configurations/{config_id:str}")
    async def configuration(
        self, request: AnyRequest, config_id: FromPath[str], notice: Query = ""
    ) -> Response[str]:
        user = await current_user(request)
        async with api_for(request, user) as api:
            config = await api.get_configuration(config_id)
            (config_names, agent_names), rows = await asyncio.gather(
                pages.names(api),
                pages.backup_rows(api, state="", agent="", configuration=config_id),
            )
        return _view(
            request,
            user,
            "configuration.html",
            active="configurations",
            notice=notice,
            config=config,
            rows=rows[:10],
            config_names=config_names,
            agent_names=agent_names,
        )

    @get("/configurations/{config_id:str}/edit")
    async def edit_configuration(
        self, request: AnyRequest, config_id: FromPath[str]
    ) -> Response[str]:
        user = await current_user(request)
        async with api_for(request, user) as api:
            config = await api.get_configuration(config_id)
            return await self._form_page(
                request, user, api, pages.ConfigForm.from_api(config), config_id=config_id
            )

    @post("/configurations/{config_id:str}/edit")
    async def save_configuration(
        self, request: AnyRequest, config_id: FromPath[str]
    ) -> Response[Any]:
        user = await current_user(request)
        raw = await request.form()
        check_form(request, user, raw)
        form = pages.ConfigForm.from_form(raw)
        async with api_for(request, user) as api:
            config = await api.get_configuration(config_id)
            form.agent_id = fmt.ref_id(config.get("agent")) or ""  # CF4 cannot move it
            try:
                await api.update_configuration(config_id, form.changes())
            except DraftError as exc:
                problem = pages.Problem(400, str(exc))
                return await self._form_page(
                    request, user, api, form, config_id=config_id, status=400, problem=problem
                )
            except ApiError as exc:
                if exc.status >= 500 or exc.status == 404:
                    raise
                return await self._form_page(
                    request,
                    user,
                    api,
                    form,
                    config_id=config_id,
                    status=exc.status,
                    problem=pages.Problem.of(exc),
                )
        return _redirect(f"/console/configurations/{config_id}", notice="saved")

    @post("/configurations/{config_id:str}/delete")
    async def delete_configuration(
        self, request: AnyRequest, config_id: FromPath[str]
    ) -> Response[Any]:
        return await _post_action(
            request,
            lambda api: api.delete_configuration(config_id),
            "/console/configurations",
            notice="deleted",
        )

    # -- agents and queues ----------------------------------------------------------------------
    @get("/agents")
    async def agents(self, request: AnyRequest) -> Response[str]:
        user = await current_user(request)
        async with api_for(request, user) as api:
            agents = (await api.list_agents())["agents"]
            configs = (await api.list_configurations())["configurations"]
        per_agent: dict[str, int] = {}
        for config in configs:
            agent_id = fmt.ref_id(config.get("agent")) or ""
            per_agent[agent_id] = per_agent.get(agent_id, 0) + 1
        return _view(
            request, user, "agents.html", active="agents", agents=agents, per_agent=per_agent
        )

    @get("/queues")
    async def queues(self, request: AnyRequest, notice: Query = "") -> Response[str]:
        user = await current_user(request)
        data: dict[str, Any] = {}
        problem = None
        async with api_for(request, user) as api:
            try:
                data = await api.list_queues()
            except ApiError as exc:
                if exc.status >= 500:
                    raise
                problem = pages.Problem.of(exc)  # not the operator project, or no admin API
        return _view(
            request,
            user,
            "queues.html",
            active="queues",
            notice=notice,
            problem=problem,
            queues=data.get("queues") or [],
            workers=data.get("workers") or [],
            missing=problem is not None and problem.status in (404, 405, 501),
        )

    @post("/queues/{name:str}")
    async def update_queue(self, request: AnyRequest, name: FromPath[str]) -> Response[Any]:
        user = await current_user(request)
        form = await request.form()
        check_form(request, user, form)
        paused = form.get("action") == "pause"
        async with api_for(request, user) as api:
            await api.update_queue(name, {"/paused": paused})
        return _redirect("/console/queues", notice="paused" if paused else "resumed")


async def _backup_list(api: AsyncApiClient, filters: dict[str, str]) -> dict[str, Any]:
    """The backups page's rows (``filters``: state, agent, configuration) and the names in them."""
    (config_names, agent_names), rows = await asyncio.gather(
        pages.names(api),
        pages.backup_rows(
            api,
            state=filters["state"],
            agent=filters["agent"],
            configuration=filters["configuration"],
        ),
    )
    return {"rows": rows, "config_names": config_names, "agent_names": agent_names}


def _run_view(
    collection: str, run: dict[str, Any], events: list[dict[str, Any]], errors: Any
) -> dict[str, Any]:
    """What the page of a backup or restore shows of its run: whether it ended, the timeline
    of its ``events``, its progress while running, and its per-file ``errors``."""
    return {
        "final": pages.is_final(collection, run.get("state")),
        "timeline": pages.timeline(events),
        "progress": pages.progress_view(events[::-1])
        if run.get("state") in ("in_progress", "stop_requested")
        else None,
        "error_list": errors,
    }


def _plain(request: AnyRequest) -> bool:
    """Plain HTTP to a host other than this machine: browsers drop the Secure cookie there."""
    host = (request.url.hostname or "").lower()
    return request.url.scheme != "https" and host not in ("localhost", "127.0.0.1", "::1")
