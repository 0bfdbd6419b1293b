"""Activities: AC1-AC3 (spec §11, OQ-35)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from cloudbackup.api.paging import paged_list
from cloudbackup.api.schemas.activities import ActivityList, activity_out
from cloudbackup.domain.activities import ActivityService

Query = Annotated[str | None, QueryParameter(required=False)]
Activities = NamedDependency[ActivityService]


def activity_list(
    request: Request[Any, Any, Any],
    activities: ActivityService,
    project_id: str,
    parts: tuple[str, ...],
    *,
    agent_id: str | None = None,
    configuration_id: str | None = None,
    marker: str | None,
    limit: str | None,
    sort_dir: str | None,
) -> ActivityList:
    items, links = paged_list(
        request,
        project_id,
        parts,
        lambda size, order: activities.page(
            project_id,
            agent_id=agent_id,
            configuration_id=configuration_id,
            marker=marker,
            limit=size,
            sort_dir=order,
        ),
        activity_out,
        marker=marker,
        limit=limit,
        sort_dir=sort_dir,
    )
    return ActivityList(activities=items, links=links)


class ActivityController(Controller):
    path = "/v2/{project_id:str}"

    @get("/activities", sync_to_thread=True)
    def list_activities(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        activities: Activities,
        marker: Query = None,
        limit: Query = None,
        sort_dir: Query = None,
    ) -> ActivityList:
        return activity_list(
            request,
            activities,
            project_id,
            ("activities",),
            marker=marker,
            limit=limit,
            sort_dir=sort_dir,
        )

    @get("/agents/{agent_id:str}/activities", sync_to_thread=True)
    def list_agent_activities(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        agent_id: FromPath[str],
        activities: Activities,
        marker: Query = None,
        limit: Query = None,
        sort_dir: Query = None,
    ) -> ActivityList:
        return activity_list(
            request,
            activities,
            project_id,
            ("agents", agent_id, "activities"),
            agent_id=agent_id,
            marker=marker,
            limit=limit,
            sort_dir=sort_dir,
        )

    @get("/configurations/{configuration_id:str}/activities", sync_to_thread=True)
    def list_configuration_activities(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        configuration_id: FromPath[str],
        activities: Activities,
        marker: Query = None,
        limit: Query = None,
        sort_dir: Query = None,
    ) -> ActivityList:
        return activity_list(
            request,
            activities,
            project_id,
            ("configurations", configuration_id, "activities"),
            configuration_id=configuration_id,
            marker=marker,
            limit=limit,
            sort_dir=sort_dir,
        )
