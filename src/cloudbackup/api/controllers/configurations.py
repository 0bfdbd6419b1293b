"""Configurations: CF1-CF5 (spec §7, §16)."""

from __future__ import annotations

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import RawBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from cloudbackup.api.body import boolean
from cloudbackup.api.call import Call, Id, Query
from cloudbackup.api.schemas.configurations import (
    ConfigurationList,
    ConfigurationOut,
    configuration_list,
    configuration_out,
    parse_create,
    parse_patch,
)
from cloudbackup.api.service_types import Configurations


class ConfigurationController(Controller):
    path = "/v2/{project_id:str}/configurations"

    @post("/", status_code=HTTP_201_CREATED, sync_to_thread=True)
    def create_configuration(
        self, call: Call, body: RawBody, configurations: Configurations
    ) -> Response[ConfigurationOut]:
        agent_id, draft = parse_create(call.request, body)
        row = configurations.create(call.project_id, agent_id, draft)
        return call.created(configuration_out(row, call.links), "configurations", row.id)

    @get("/", sync_to_thread=True)
    def list_configurations(
        self, call: Call, configurations: Configurations, restorable: Query = None
    ) -> ConfigurationList:
        rows = configurations.list_project(call.project_id, boolean("restorable", restorable))
        return configuration_list(rows, call.links)

    @get("/{configuration_id:str}", sync_to_thread=True)
    def get_configuration(
        self, call: Call, configuration_id: Id, configurations: Configurations
    ) -> ConfigurationOut:
        return configuration_out(configurations.get(call.project_id, configuration_id), call.links)

    @patch("/{configuration_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def update_configuration(
        self, call: Call, configuration_id: Id, body: RawBody, configurations: Configurations
    ) -> None:
        update = parse_patch(call.request, body)
        configurations.update(call.project_id, configuration_id, update)

    @delete("/{configuration_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def delete_configuration(
        self, call: Call, configuration_id: Id, configurations: Configurations
    ) -> None:
        configurations.delete(call.project_id, configuration_id)
