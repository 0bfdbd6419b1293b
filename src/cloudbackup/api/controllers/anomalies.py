"""Anomalies of the ransomware guard (an API extension): list, read, dismiss."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, patch
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter, RawBody

from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.paging import PAGING, Paging, paged_list
from cloudbackup.api.schemas.anomalies import (
    AnomalyList,
    AnomalyOut,
    anomaly_out,
    parse_dismissal,
)
from cloudbackup.domain.anomalies import AnomalyService
from cloudbackup.domain.auth import Permission

Anomalies = NamedDependency[AnomalyService]
# `state` is a name Litestar reserves for handler arguments: the parameter is read under another.
StateQuery = Annotated[str | None, QueryParameter(name="state", required=False)]
# Dismissing releases a hold on backups: the admin role's delete permission, not a creator's.
DISMISS = {"permission": Permission.DELETE}


class AnomalyController(Controller):
    path = "/v2/{project_id:str}/anomalies"
    dependencies = PAGING

    @get("/", sync_to_thread=True)
    def list_anomalies(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        anomalies: Anomalies,
        paging: Paging,
        state_filter: StateQuery = None,
    ) -> AnomalyList:
        items, links = paged_list(
            request,
            project_id,
            ("anomalies",),
            lambda size, order: anomalies.page(
                project_id, marker=paging.marker, limit=size, sort_dir=order, state=state_filter
            ),
            anomaly_out,
            paging=paging,
            filters={"state": state_filter} if state_filter is not None else None,
        )
        return AnomalyList(anomalies=items, links=links)

    @get("/{anomaly_id:str}", sync_to_thread=True)
    def get_anomaly(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        anomaly_id: FromPath[str],
        anomalies: Anomalies,
    ) -> AnomalyOut:
        return anomaly_out(anomalies.get(project_id, anomaly_id), LinkBuilder(request, project_id))

    @patch("/{anomaly_id:str}", sync_to_thread=True, opt=DISMISS)
    def update_anomaly(
        self,
        request: Request[Any, Any, Any],
        project_id: FromPath[str],
        anomaly_id: FromPath[str],
        body: RawBody,
        anomalies: Anomalies,
    ) -> AnomalyOut:
        parse_dismissal(request, body)
        principal = request.state.principal
        row = anomalies.dismiss(project_id, anomaly_id, principal.token_id, principal.agent_id)
        return anomaly_out(row, LinkBuilder(request, project_id))
