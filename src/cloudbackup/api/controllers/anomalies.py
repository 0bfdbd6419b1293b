"""Anomalies of the ransomware guard (an API extension): list, read, dismiss."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, patch
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter, RawBody

from cloudbackup.api.auth import NEEDS_DELETE
from cloudbackup.api.call import Call
from cloudbackup.api.paging import Paging, paged_rows
from cloudbackup.api.schemas.anomalies import (
    AnomalyList,
    AnomalyOut,
    anomaly_out,
    parse_dismissal,
)
from cloudbackup.domain.anomalies import AnomalyService

Anomalies = NamedDependency[AnomalyService]
# `state` is a name Litestar reserves for handler arguments: the parameter is read under another.
StateQuery = Annotated[str | None, QueryParameter(name="state", required=False)]


class AnomalyController(Controller):
    path = "/v2/{project_id:str}/anomalies"

    @get("/", sync_to_thread=True)
    def list_anomalies(
        self, call: Call, anomalies: Anomalies, paging: Paging, state_filter: StateQuery = None
    ) -> AnomalyList:
        items, links = paged_rows(
            call,
            ("anomalies",),
            anomalies.page,
            anomaly_out,
            paging,
            filters={"state": state_filter} if state_filter is not None else None,
            state=state_filter,
        )
        return AnomalyList(anomalies=items, links=links)

    @get("/{anomaly_id:str}", sync_to_thread=True)
    def get_anomaly(
        self, call: Call, anomaly_id: FromPath[str], anomalies: Anomalies
    ) -> AnomalyOut:
        return anomaly_out(anomalies.get(call.project_id, anomaly_id), call.links)

    # Dismissing releases a hold on backups: the admin role's Delete permission, not a creator's.
    @patch("/{anomaly_id:str}", sync_to_thread=True, opt=NEEDS_DELETE)
    def update_anomaly(
        self, call: Call, anomaly_id: FromPath[str], body: RawBody, anomalies: Anomalies
    ) -> AnomalyOut:
        parse_dismissal(call.request, body)
        principal = call.request.state.principal
        row = anomalies.dismiss(call.project_id, anomaly_id, principal.token_id, principal.agent_id)
        return anomaly_out(row, call.links)
