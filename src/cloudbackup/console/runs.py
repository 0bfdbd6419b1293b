"""What the pages of a backup or restore show of its run: whether it ended, its timeline of
events, and its progress (percent, rate, ETA) while it runs; and the handlers of one run's page,
live part and stop button, which both kinds share (:class:`RunPages`)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get, post
from litestar.params import FromPath

from cloudbackup.client import format as fmt
from cloudbackup.client.api import FINAL_STATES, ApiError, AsyncApiClient
from cloudbackup.client.progress import is_progress_event
from cloudbackup.console.forms import post_action
from cloudbackup.console.views import AnyRequest, LoggedIn, Query, render

RESTORE_FINAL_STATES = frozenset({"completed", "completed_with_errors", "failed", "stopped"})
RUNNING_STATES = ("in_progress", "stop_requested")


def is_final(kind: str, state: str | None) -> bool:
    return (state or "") in (FINAL_STATES if kind == "backups" else RESTORE_FINAL_STATES)


def progress_view(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Percent, rate and ETA from the newest ``*_progress`` events (newest first)."""
    progress = [e for e in events if is_progress_event(e)]
    if not progress:
        return None
    newest = progress[0]
    done, total = newest.get("bytes_completed") or 0, newest.get("total_bytes") or 0
    view: dict[str, Any] = {
        "done": done,
        "total": total,
        "percent": int(100 * done / total) if total else None,
        "rate": None,
        "eta": None,
    }
    if len(progress) > 1:
        t1, t0 = fmt.parse_time(newest.get("time")), fmt.parse_time(progress[1].get("time"))
        before = progress[1].get("bytes_completed") or 0
        if t1 and t0 and t1 > t0 and done >= before:
            view["rate"] = (done - before) / (t1 - t0).total_seconds()
            if view["rate"]:
                view["eta"] = max(total - done, 0) / view["rate"]
    return view


async def latest_progress(api: AsyncApiClient, kind: str, run_id: str) -> dict[str, Any] | None:
    try:
        page = await api.list_events((kind, run_id), sort_dir="desc", limit=30)
    except ApiError:
        return None
    return progress_view(page.get("events") or [])


async def all_events(api: AsyncApiClient, kind: str, run_id: str) -> list[dict[str, Any]]:
    """Every event of one run, oldest first (pages of 100, at most 20 pages)."""
    events: list[dict[str, Any]] = []
    marker: str | None = None
    for _ in range(20):
        page = await api.list_events((kind, run_id), marker=marker, limit=100, sort_dir="asc")
        batch = page.get("events") or []
        events += batch
        if len(batch) < 100:
            break
        marker = str(batch[-1]["id"])
    return events


def timeline(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events people read: state changes and requests, not every progress tick."""
    return [e for e in events if not is_progress_event(e)]


def run_view(
    kind: str, run: dict[str, Any], events: list[dict[str, Any]], errors: Any
) -> dict[str, Any]:
    """What the page of a backup or restore shows of its run: whether it ended, the timeline
    of its ``events``, its progress while running, and its per-file ``errors``."""
    return {
        "final": is_final(kind, run.get("state")),
        "timeline": timeline(events),
        "progress": progress_view(events[::-1]) if run.get("state") in RUNNING_STATES else None,
        "error_list": errors,
    }


class RunPages(Controller):
    """One run's page, its live part (what static/console.js refreshes) and its stop button,
    under ``/console/<kind>/<id>``: ``class BackupPages(RunPages, kind="backups",
    stop_notice="stopping")`` serves ``/backups`` with ``backup.html`` and
    ``_backup_live.html``; each kind says how to read its run."""

    kind: str  # "backups" or "restores": the collection, also the page's place in the navigation
    page_template: str
    live_template: str
    stop_notice: str

    def __init_subclass__(cls, kind: str = "", stop_notice: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind:
            cls.path, cls.kind, cls.stop_notice = f"/{kind}", kind, stop_notice
            cls.page_template, cls.live_template = f"{kind[:-1]}.html", f"_{kind[:-1]}_live.html"

    async def read(self, api: AsyncApiClient, run_id: str) -> dict[str, Any]:
        """What the run's page and its live part show."""
        raise NotImplementedError

    async def ask_to_stop(self, api: AsyncApiClient, run_id: str) -> object:
        return await api.stop_run(self.kind, run_id)

    @get("/{run_id:str}")
    async def run(
        self, request: AnyRequest, user: LoggedIn, run_id: FromPath[str], notice: Query = ""
    ) -> Response[str]:
        return await render(
            request,
            user,
            self.page_template,
            lambda api: self.read(api, run_id),
            active=self.kind,
            notice=notice,
        )

    @get("/{run_id:str}/live")
    async def live(
        self, request: AnyRequest, user: LoggedIn, run_id: FromPath[str]
    ) -> Response[str]:
        return await render(request, user, self.live_template, lambda api: self.read(api, run_id))

    @post("/{run_id:str}/stop")
    async def stop(
        self, request: AnyRequest, user: LoggedIn, run_id: FromPath[str]
    ) -> Response[Any]:
        return await post_action(
            request,
            user,
            lambda api: self.ask_to_stop(api, run_id),
            f"/console/{self.kind}/{run_id}",
            notice=self.stop_notice,
        )
