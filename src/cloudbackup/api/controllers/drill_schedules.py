"""A configuration's drill schedule (issue 14, an API extension; the configuration's v2 body is
unchanged): ``PUT``/``GET``/``DELETE .../configurations/{configuration_id}/drill-schedule``.

Setting or removing it needs the admin role (the Delete permission): it decides how often the
service restores a tenant's whole backup. Reading needs Read (an observer)."""

from __future__ import annotations

from litestar import Controller, Response, delete, get, put
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, RawBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from cloudbackup.api.auth import NEEDS_DELETE
from cloudbackup.api.call import Call
from cloudbackup.api.schemas.drill_schedules import (
    DrillScheduleOut,
    drill_schedule_out,
    parse_put,
)
from cloudbackup.domain.drill_schedules import DrillScheduleService

DrillSchedules = NamedDependency[DrillScheduleService]


class DrillScheduleController(Controller):
    path = "/v2/{project_id:str}/configurations/{configuration_id:str}/drill-schedule"

    @put(
        "/",
        sync_to_thread=True,
        opt=NEEDS_DELETE,
        responses={201: ResponseSpec(DrillScheduleOut, description="The schedule is new.")},
    )
    def put_drill_schedule(
        self,
        call: Call,
        configuration_id: FromPath[str],
        body: RawBody,
        drill_schedules: DrillSchedules,
    ) -> Response[DrillScheduleOut]:
        """201 when the schedule is new, 200 when it replaced one."""
        view, created = drill_schedules.put(
            call.project_id, configuration_id, parse_put(call.request, body)
        )
        status = HTTP_201_CREATED if created else HTTP_200_OK
        return Response(drill_schedule_out(view, call.links), status_code=status)

    @get("/", sync_to_thread=True)
    def get_drill_schedule(
        self, call: Call, configuration_id: FromPath[str], drill_schedules: DrillSchedules
    ) -> DrillScheduleOut:
        return drill_schedule_out(
            drill_schedules.get(call.project_id, configuration_id), call.links
        )

    @delete("/", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True, opt=NEEDS_DELETE)
    def delete_drill_schedule(
        self, call: Call, configuration_id: FromPath[str], drill_schedules: DrillSchedules
    ) -> None:
        drill_schedules.delete(call.project_id, configuration_id)
