"""B4 reports of one run handed to this agent: each carries the run's attempt
(``X-Run-Attempt``), so a report of an attempt the server has re-driven changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cloudbackup.agent.session import AgentSession, ApiRefused

JSON_PATCH = "application/json-patch+json"


class Superseded(Exception):
    """The server gave the run to a later attempt, or ended it: stop writing."""


class StopRequested(Exception):
    """Someone asked the run to stop."""


def replace(path: str, value: Any) -> dict[str, Any]:
    return {"op": "replace", "path": path, "value": value}


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class RunReports:
    """PATCH and GET of one run, as its executor."""

    def __init__(self, session: AgentSession, plural: str, run_id: str, attempt: int) -> None:
        self.session = session
        self.url = session.path(plural, run_id)
        self.attempt = attempt

    def state(self) -> str:
        answer = self.session.checked("GET", self.url).json()
        return str(answer["state"])

    def patch(self, operations: list[dict[str, Any]]) -> None:
        """Send a report; :class:`StopRequested` when the run waits to be stopped instead,
        :class:`Superseded` when this attempt no longer owns it."""
        headers = {"Content-Type": JSON_PATCH, "X-Run-Attempt": str(self.attempt)}
        response = self.session.request(
            "PATCH", self.url, content=json.dumps(operations), headers=headers
        )
        if response.status_code == 204:
            return
        if response.status_code == 409:
            if self.state() == "stop_requested":
                raise StopRequested(self.url)
            raise Superseded(ApiRefused(response).message)
        raise ApiRefused(response)
