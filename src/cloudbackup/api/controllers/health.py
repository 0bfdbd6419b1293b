"""Health and ping: H1-H3 (spec §12). Public: no token needed, a bad one is ignored (OQ-27)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT, HTTP_503_SERVICE_UNAVAILABLE

from cloudbackup.api.call import Call
from cloudbackup.api.schemas.health import check_out, report_out
from cloudbackup.api.service_types import Health
from cloudbackup.domain.errors import NotFound

PUBLIC = {"public": True}


class HealthController(Controller):
    path = "/v2/{project_id:str}"

    @get("/health", opt=PUBLIC, sync_to_thread=True)
    def health(self, call: Call, health: Health) -> Response[dict[str, Any]]:
        """200 when every dependency is up, else 503; the same body either way."""
        report = health.report()
        return Response(
            report_out(report, call.links),
            status_code=HTTP_200_OK if report.online else HTTP_503_SERVICE_UNAVAILABLE,
        )

    @get("/health/{dependent_system:path}", opt=PUBLIC, sync_to_thread=True)
    def dependency_health(
        self, call: Call, dependent_system: FromPath[str], health: Health
    ) -> Response[dict[str, Any]]:
        """``storage/database`` or just ``database`` (OQ-28)."""
        report = health.report()
        check = report.find(dependent_system)
        if check is None:
            known = ", ".join(f"{c.category}/{c.system}" for c in report.checks)
            raise NotFound(
                f"Unknown dependent system {dependent_system.strip('/')!r}.", [f"Known: {known}."]
            )
        return Response(
            check_out(check, call.links),
            status_code=HTTP_200_OK if check.online else HTTP_503_SERVICE_UNAVAILABLE,
        )

    @get("/ping", opt=PUBLIC, status_code=HTTP_204_NO_CONTENT, sync_to_thread=False)
    def ping(self) -> None:
        """Liveness for load balancers: this process answers; no dependency is asked."""
