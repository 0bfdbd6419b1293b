"""Summary settings: S1/S2 (spec §13)."""

from __future__ import annotations

from litestar import Controller, get, put
from litestar.di import NamedDependency
from litestar.params import RawBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from cloudbackup.api.call import Call
from cloudbackup.api.schemas.summaries import SummariesOut, parse_summaries, summaries_out
from cloudbackup.domain.summaries import SummaryService

Summaries = NamedDependency[SummaryService]


class SummarySettingsController(Controller):
    path = "/v2/{project_id:str}/settings/summaries"

    @put("/", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def put_summaries(self, call: Call, body: RawBody, summaries: Summaries) -> None:
        summaries.put(call.project_id, parse_summaries(call.request, body))

    @get("/", sync_to_thread=True)
    def get_summaries(self, call: Call, summaries: Summaries) -> SummariesOut:
        return summaries_out(summaries.get(call.project_id))
