"""Activities: AC1-AC3 (spec §11, OQ-35)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from cloudbackup.api.paging import PAGING, ListQuery, Paging, paged_list
from cloudbackup.api.schemas.activities import ActivityList, activity_out
from cloudbackup.domain.activities import ActivityService

Activities = NamedDependency[ActivityService]


def activity_list(
    request: Request[Any, Any, Any],
    activities: ActivityService,
    project_id: str,
    parts: tuple[str, ...],
    paging: ListQuery,
    *,
    agent_id: str | None = None,
    configuration_id: str | None = None,
) -> ActivityList:
    """The activities of the project, or of one agent or configuration, at ``/{parts}``."""
    items, links = paged_list(
        request,
        project_id,
        parts,
        lambda size, order: activities.page(
            project_id,
            agent_id=agent_id,
            configuration_id=configuration_id,
            marker=paging.marker,
            limit=size,
            sort_dir=order,
        ),
        activity_out,
        paging=paging,
    )
    return ActivityList(activities=items, links=links)


class ActivityController(Controller):
    path = "/v2/{project_id:str}"
    dependencies = PAGING

    @get("/activities", sync_to_thread=True)
    def list_activities(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        activities: Activities,
        paging: Paging,
    ) -> ActivityList:
        return activity_list(request, activities, project_id, ("activities",), paging)

    @get("/agents/{agent_id:str}/activities", sync_to_thread=True)
    def list_agent_activities(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        agent_id: FromPath[str],
        activities: Activities,
        paging: Paging,
    ) -> ActivityList:
        parts = ("agents", agent_id, "activities")
        return activity_list(request, activities, project_id, parts, paging, agent_id=agent_id)

    @get("/configurations/{configuration_id:str}/activities", sync_to_thread=True)
    def list_configuration_activities(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        configuration_id: FromPath[str],
        activities: Activities,
        paging: Paging,
    ) -> ActivityList:
        parts = ("configurations", configuration_id, "activities")
        return activity_list(
            request, activities, project_id, parts, paging, configuration_id=configuration_id
        )
