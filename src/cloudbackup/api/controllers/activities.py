"""Activities: AC1-AC3 (spec §11, OQ-35)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get
from litestar.di import NamedDependency

from cloudbackup.api.call import ApiCall, Call, Id
from cloudbackup.api.paging import ListQuery, Paging, paged_rows
from cloudbackup.api.schemas.activities import ActivityList, activity_out
from cloudbackup.domain.activities import ActivityService

Activities = NamedDependency[ActivityService]


def activity_list(
    call: ApiCall,
    activities: ActivityService,
    paging: ListQuery,
    owner: tuple[str, str] | None = None,
) -> ActivityList:
    """The activities of the project, or of one ``owner`` (``("agents", agent_id)`` or
    ``("configurations", configuration_id)``) at ``/{owner}/activities``."""
    parts: tuple[str, ...] = ("activities",)
    owned: dict[str, Any] = {}
    if owner is not None:
        kind, owner_id = owner
        parts, owned = (kind, owner_id, "activities"), {f"{kind[:-1]}_id": owner_id}
    items, links = paged_rows(call, parts, activities.page, activity_out, paging, **owned)
    return ActivityList(activities=items, links=links)


class ActivityController(Controller):
    path = "/v2/{project_id:str}"

    @get("/activities", sync_to_thread=True)
    def list_activities(self, call: Call, activities: Activities, paging: Paging) -> ActivityList:
        return activity_list(call, activities, paging)

    @get("/agents/{agent_id:str}/activities", sync_to_thread=True)
    def list_agent_activities(
        self, call: Call, agent_id: Id, activities: Activities, paging: Paging
    ) -> ActivityList:
        return activity_list(call, activities, paging, ("agents", agent_id))

    @get("/configurations/{configuration_id:str}/activities", sync_to_thread=True)
    def list_configuration_activities(
        self, call: Call, configuration_id: Id, activities: Activities, paging: Paging
    ) -> ActivityList:
        return activity_list(call, activities, paging, ("configurations", configuration_id))
