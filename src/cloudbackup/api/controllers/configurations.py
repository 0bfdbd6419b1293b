"""Configurations: CF1-CF5 (spec §7, §16)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter, RawBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from cloudbackup.api.body import boolean
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.schemas.configurations import (
    ConfigurationList,
    ConfigurationOut,
    configuration_list,
    configuration_out,
    parse_create,
    parse_patch,
)
from cloudbackup.domain.configurations import ConfigurationService
from cloudbackup.store.tables import utcnow

Query = Annotated[str | None, QueryParameter(required=False)]
Configurations = NamedDependency[ConfigurationService]


class ConfigurationController(Controller):
    path = "/v2/{project_id:str}/configurations"

    @post("/", status_code=HTTP_201_CREATED, sync_to_thread=True)
    def create_configuration(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        body: RawBody,
        configurations: Configurations,
    ) -> Response[ConfigurationOut]:
        agent_id, draft = parse_create(request, body)
        row = configurations.create(project_id, agent_id, draft)
        links = LinkBuilder(request, project_id)
        return Response(
            configuration_out(row, links, utcnow()),
            status_code=HTTP_201_CREATED,
            headers={"Location": links.href("configurations", row.id)},
        )

    @get("/", sync_to_thread=True)
    def list_configurations(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        configurations: Configurations,
        restorable: Query = None,
    ) -> ConfigurationList:
        rows = configurations.list_project(project_id, boolean("restorable", restorable))
        return configuration_list(rows, LinkBuilder(request, project_id), utcnow())

    @get("/{configuration_id:str}", sync_to_thread=True)
    def get_configuration(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        configuration_id: FromPath[str],
        configurations: Configurations,
    ) -> ConfigurationOut:
        row = configurations.get(project_id, configuration_id)
        return configuration_out(row, LinkBuilder(request, project_id), utcnow())

    @patch("/{configuration_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def update_configuration(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        configuration_id: FromPath[str],
        body: RawBody,
        configurations: Configurations,
    ) -> None:
        configurations.update(project_id, configuration_id, parse_patch(request, body))

    @delete("/{configuration_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def delete_configuration(
        self,
        project_id: FromPath[str],
        configuration_id: FromPath[str],
        configurations: Configurations,
    ) -> None:
        configurations.delete(project_id, configuration_id)
