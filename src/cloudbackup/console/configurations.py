"""The configurations pages: the list, one configuration with its latest backups, the create and
edit forms, and delete."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Controller, Response, get, post
from litestar.params import FromPath

from cloudbackup.client import format as fmt
from cloudbackup.client.api import ApiError, AsyncApiClient
from cloudbackup.client.drafts import DraftError
from cloudbackup.console.backups import matching_backups
from cloudbackup.console.configuration_form import WEEKDAY_CHOICES, ConfigForm, time_zones
from cloudbackup.console.forms import Problem, form_page, post_action, posted_form
from cloudbackup.console.session import ConsoleUser
from cloudbackup.console.views import AnyRequest, LoggedIn, Query, api_for, names, redirect, view


async def _form_page(
    request: AnyRequest,
    user: ConsoleUser,
    api: AsyncApiClient,
    form: ConfigForm,
    *,
    config_id: str | None = None,
    refused: ApiError | DraftError | None = None,
) -> Response[str]:
    """The create (no ``config_id``) or edit form, with the reasons it was ``refused``, if so."""
    problem = Problem.of(refused) if refused else None
    return await form_page(
        request,
        user,
        api,
        "configuration_form.html",
        active="configurations",
        status=problem.status if problem else 200,
        problem=problem,
        form=form,
        config_id=config_id,
        time_zones=time_zones(),
        weekdays=WEEKDAY_CHOICES,
    )


class ConfigurationPages(Controller):
    @get("/configurations")
    async def configurations(
        self, request: AnyRequest, user: LoggedIn, notice: Query = ""
    ) -> Response[str]:
        async with api_for(request, user) as api:
            configs, (_, agent_names) = await asyncio.gather(api.list_configurations(), names(api))
        return view(
            request,
            user,
            "configurations.html",
            active="configurations",
            notice=notice,
            configurations=configs["configurations"],
            agent_names=agent_names,
        )

    @get("/configurations/new")
    async def new_configuration(self, request: AnyRequest, user: LoggedIn) -> Response[str]:
        async with api_for(request, user) as api:
            agents = (await api.list_agents())["agents"]
            form = ConfigForm(agent_id=agents[0]["id"] if len(agents) == 1 else "")
            return await _form_page(request, user, api, form)

    @post("/configurations")
    async def create_configuration(self, request: AnyRequest, user: LoggedIn) -> Response[Any]:
        form = ConfigForm.from_form(await posted_form(request, user))
        async with api_for(request, user) as api:
            try:
                created = await api.create_configuration(form.body())
            except (DraftError, ApiError) as exc:
                if isinstance(exc, ApiError) and exc.status >= 500:
                    raise
                return await _form_page(request, user, api, form, refused=exc)
        return redirect(f"/console/configurations/{created['id']}", notice="created")

    @get("/configurations/{config_id:str}")
    async def configuration(
        self, request: AnyRequest, user: LoggedIn, config_id: FromPath[str], notice: Query = ""
    ) -> Response[str]:
        async with api_for(request, user) as api:
            config = await api.get_configuration(config_id)
            (config_names, agent_names), rows = await asyncio.gather(
                names(api),
                matching_backups(api, state="", agent="", configuration=config_id),
            )
        return view(
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
        self, request: AnyRequest, user: LoggedIn, config_id: FromPath[str]
    ) -> Response[str]:
        async with api_for(request, user) as api:
            form = ConfigForm.from_api(await api.get_configuration(config_id))
            return await _form_page(request, user, api, form, config_id=config_id)

    @post("/configurations/{config_id:str}/edit")
    async def save_configuration(
        self, request: AnyRequest, user: LoggedIn, config_id: FromPath[str]
    ) -> Response[Any]:
        form = ConfigForm.from_form(await posted_form(request, user))
        async with api_for(request, user) as api:
            config = await api.get_configuration(config_id)
            form.agent_id = fmt.ref_id(config.get("agent")) or ""  # CF4 cannot move it
            try:
                await api.update_configuration(config_id, form.changes())
            except (DraftError, ApiError) as exc:
                if isinstance(exc, ApiError) and (exc.status >= 500 or exc.status == 404):
                    raise
                return await _form_page(request, user, api, form, config_id=config_id, refused=exc)
        return redirect(f"/console/configurations/{config_id}", notice="saved")

    @post("/configurations/{config_id:str}/delete")
    async def delete_configuration(
        self, request: AnyRequest, user: LoggedIn, config_id: FromPath[str]
    ) -> Response[Any]:
        return await post_action(
            request,
            user,
            lambda api: api.delete_configuration(config_id),
            "/console/configurations",
            notice="deleted",
        )
