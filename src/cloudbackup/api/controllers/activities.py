"""Activities: AC1-AC3 (spec §11, OQ-35)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from cloudbackup.api.body import page_limit
from cloudbackup.api.controllers.events import direction
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.paging import links_of_page
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
    size, order = page_limit(limit), direction(sort_dir, "desc")
    page = activities.page(
        project_id,
        agent_id=agent_id,
        configuration_id=configuration_id,
        marker=marker,
        limit=size,
        sort_dir=order,
    )
    links = LinkBuilder(request, project_id)
    return ActivityList(
        activities=[activity_out(item, links) for item in page.items],
        links=links_of_page(
            links,
            parts,
            page,
            marker=marker,
            limit=size,
            sort_dir=order,
            default_sort_dir="desc",
        ),
    )


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
