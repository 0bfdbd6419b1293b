"""Activities: AC1-AC3 (spec §11, OQ-35)."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency

from cloudbackup.api.call import ApiCall, Call, Id
from cloudbackup.api.paging import ListQuery, Paging, paged_list
from cloudbackup.api.schemas.activities import ActivityList, activity_out
from cloudbackup.domain.activities import ActivityService

Activities = NamedDependency[ActivityService]


def activity_list(
    call: ApiCall,
    activities: ActivityService,
    parts: tuple[str, ...],
    paging: ListQuery,
    *,
    agent_id: str | None = None,
    configuration_id: str | None = None,
) -> ActivityList:
    """The activities of the project, or of one agent or configuration, at ``/{parts}``."""
    items, links = paged_list(
        call,
        parts,
        lambda size, order: activities.page(
            call.project_id,
            agent_id=agent_id,
            configuration_id=configuration_id,
            marker=paging.marker,
            limit=size,
            sort_dir=order,
        ),
        activity_out,
        paging,
    )
    return ActivityList(activities=items, links=links)


class ActivityController(Controller):
    path = "/v2/{project_id:str}"

    @get("/activities", sync_to_thread=True)
    def list_activities(self, call: Call, activities: Activities, paging: Paging) -> ActivityList:
        return activity_list(call, activities, ("activities",), paging)

    @get("/agents/{agent_id:str}/activities", sync_to_thread=True)
    def list_agent_activities(
        self, call: Call, agent_id: Id, activities: Activities, paging: Paging
    ) -> ActivityList:
        parts = ("agents", agent_id, "activities")
        return activity_list(call, activities, parts, paging, agent_id=agent_id)

    @get("/configurations/{configuration_id:str}/activities", sync_to_thread=True)
    def list_configuration_activities(
        self, call: Call, configuration_id: Id, activities: Activities, paging: Paging
    ) -> ActivityList:
        parts = ("configurations", configuration_id, "activities")
        return activity_list(call, activities, parts, paging, configuration_id=configuration_id)
