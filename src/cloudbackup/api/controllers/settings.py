"""Summary settings: S1/S2 (spec §13)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, RawBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from cloudbackup.api.schemas.summaries import SummariesOut, parse_summaries, summaries_out
from cloudbackup.domain.summaries import SummaryService

Summaries = NamedDependency[SummaryService]


class SummarySettingsController(Controller):
    path = "/v2/{project_id:str}/settings/summaries"

    @put("/", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True)
    def put_summaries(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        body: RawBody,
        summaries: Summaries,
    ) -> None:
        summaries.put(project_id, parse_summaries(request, body))

    @get("/", sync_to_thread=True)
    def get_summaries(self, project_id: FromPath[str], summaries: Summaries) -> SummariesOut:
        return summaries_out(summaries.get(project_id))
