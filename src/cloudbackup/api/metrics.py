"""Prometheus metrics at `/metrics`, and the middleware that times requests and binds log ids.

Backup, queue, schedule and worker figures are computed at scrape time from the database and the
broker, so every API replica reports the same numbers and nothing depends on which Celery process
did the work. Request latency is per API process; with several uvicorn workers set
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multi-process mode) to add them up.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from litestar import Request, Response, get
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from cloudbackup import logs
from cloudbackup.domain.credentials import principal_of
from cloudbackup.domain.errors import Unauthenticated
from cloudbackup.domain.queue_admin import QueueAdministration, QueueInfo, WorkerInfo
from cloudbackup.domain.run_states import (
    BACKUP_MACHINE,
    DRILL_MACHINE,
    RESTORABLE_STATES,
    BackupState,
    DrillState,
)
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.drill_repository import last_drill
from cloudbackup.store.drill_results import DrillResult, last_drill_results
from cloudbackup.store.drill_schedules import schedules_due
from cloudbackup.store.service_metrics import Distribution, backup_figures, schedule_backlog
from cloudbackup.store.tables import utcnow

DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)
BYTES_BUCKETS = tuple(float(2**p) for p in (10, 20, 24, 27, 30, 33, 36, 40))  # 1 KiB .. 1 TiB
T = TypeVar("T")

log = logging.getLogger("cloudbackup.api.requests")
CACHE_SECONDS = 5.0  # a scrape storm (several Prometheus servers, retries) costs one set of queries

HTTP_REGISTRY = CollectorRegistry()
REQUEST_SECONDS = Histogram(
    "cloudbackup_http_request_duration_seconds",
    "API request latency by method, route template and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=HTTP_REGISTRY,
)


def observe(app: ASGIApp) -> ASGIApp:
    """Middleware: bind project/agent/backup ids to the request's log lines; time it."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        status = 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        began = time.perf_counter()
        with logs.bound(**_ids(scope)):
            try:
                await app(scope, receive, send_and_watch)
            finally:
                seconds = time.perf_counter() - began
                method, route = scope.get("method", "GET"), scope.get("path_template", "unmatched")
                REQUEST_SECONDS.labels(method, route, str(status)).observe(seconds)
                log.debug("%s %s %d %.1f ms", method, route, status, seconds * 1000)

    return middleware


def _ids(scope: Scope) -> dict[str, str | None]:
    params: dict[str, Any] = scope.get("path_params") or {}
    agent = params.get("agent_id")
    if agent is None:
        for key, value in scope.get("headers", []):
            if key == b"x-agent-id":
                agent = value.decode("latin-1")[:64]
                break
    return {
        "project_id": params.get("project_id"),
        "backup_id": params.get("backup_id"),
        "agent_id": agent,
    }


METRICS_REFUSED = (
    "GET /metrics needs an X-Auth-Token of the operator project or "
    "Authorization: Bearer <CLOUDBACKUP_METRICS_TOKEN>."
)


async def require_metrics_access(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard of `/metrics`: the metrics bearer token, an operator token, or an explicit opening.

    The figures describe every tenant's activity and cost whole-table queries, so they are closed
    unless ``CLOUDBACKUP_METRICS_PUBLIC`` says otherwise. Every refusal is the same 401.
    """
    state = connection.app.state
    settings: Settings = state.settings
    if settings.metrics_public:
        return
    given = connection.headers.get("authorization", "")
    if settings.metrics_token and hmac.compare_digest(
        given.encode(), f"Bearer {settings.metrics_token}".encode()
    ):
        return
    secret = connection.headers.get("x-auth-token", "")
    if secret:
        principal = await principal_of(secret, state.database, state.token_cache)
        if principal is not None and principal.project_id == settings.admin_project:
            return
    raise Unauthenticated(METRICS_REFUSED)


@get(
    "/metrics",
    opt={"public": True},  # not the tenants' token guard: require_metrics_access decides
    guards=[require_metrics_access],
    sync_to_thread=True,
    media_type=CONTENT_TYPE_LATEST,
)
def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus text exposition (no tenant labels; for the operator's scrapers only)."""
    registry = _service_registry(request.app.state)
    body = _request_metrics() + generate_latest(registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


_registry_lock = threading.Lock()


def _service_registry(state: Any) -> CollectorRegistry:
    with _registry_lock:
        registry: CollectorRegistry | None = state.get("metrics_registry")
        if registry is None:
            registry = CollectorRegistry()
            registry.register(ServiceCollector(state.database, state.queue_admin))
            state.metrics_registry = registry
        return registry


def _request_metrics() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(HTTP_REGISTRY)


class ServiceCollector(Collector):
    """Figures of the whole service, read from the database and the broker at scrape time."""

    def __init__(self, db: Database, admin: QueueAdministration) -> None:
        self.db = db
        self.admin = admin
        self._cached: tuple[float, list[Metric]] | None = None
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        return []  # no eager collection at registration

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > CACHE_SECONDS:
                self._cached = (time.monotonic(), self._gather())
            yield from self._cached[1]

    def _gather(self) -> list[Metric]:
        return [
            *self._backups(),
            *self._schedules(),
            *self._queues(),
            *self._workers(),
            *self._drills(),
            *self._drills_by_configuration(),
        ]

    def _backups(self) -> list[Metric]:
        by_state = GaugeMetricFamily(
            "cloudbackup_backups", "Backups by current state.", labels=["state"]
        )
        figures = backup_figures(
            self.db,
            final_states=[s.value for s in BACKUP_MACHINE.final],
            restorable_states=[s.value for s in RESTORABLE_STATES],
            duration_bounds=DURATION_BUCKETS,
            size_bounds=BYTES_BUCKETS,
        )
        for state in BackupState:
            by_state.add_metric([state.value], figures.by_state.get(state.value, 0))
        durations = _by_state_histogram(
            "cloudbackup_backup_duration_seconds",
            "Run time of finished backups (started to ended), by final state.",
            figures.durations,
        )
        sizes = _by_state_histogram(
            "cloudbackup_backup_bytes",
            "New bytes stored by each successful backup (after deduplication), by final state.",
            figures.sizes,
        )
        return [by_state, durations, sizes]

    def _schedules(self) -> list[Metric]:
        now = utcnow()
        backlog = schedule_backlog(self.db, now)
        oldest = backlog.oldest_due
        behind = GaugeMetricFamily(
            "cloudbackup_schedule_lag_seconds",
            "How long the most overdue schedule has been due without firing (0 = on time).",
        )
        behind.add_metric([], 0.0 if oldest is None else (now - oldest).total_seconds())
        overdue = GaugeMetricFamily(
            "cloudbackup_schedules_due", "Schedules due and not yet fired by a tick."
        )
        overdue.add_metric([], backlog.due)
        return [behind, overdue]

    def _drills(self) -> list[Metric]:
        """The newest ended restore drill (issue 14): how long ago, whether it passed, and its
        recovery time. No samples before the first drill."""
        last = last_drill(self.db, [s.value for s in DRILL_MACHINE.final])
        age = GaugeMetricFamily(
            "cloudbackup_last_drill_age_seconds", "Seconds since the newest restore drill ended."
        )
        passed = GaugeMetricFamily(
            "cloudbackup_last_drill_passed", "1 if the newest restore drill passed, else 0."
        )
        rto = GaugeMetricFamily(
            "cloudbackup_last_drill_duration_seconds",
            "Restore and check time of the newest restore drill (its measured recovery time).",
        )
        if last is not None:
            age.add_metric([], (utcnow() - last.ended_time).total_seconds())
            passed.add_metric([], 1.0 if last.state == DrillState.PASSED else 0.0)
            if last.duration_seconds is not None:
                rto.add_metric([], last.duration_seconds)
        return [age, passed, rto]

    def _drills_by_configuration(self) -> list[Metric]:
        """Each live configuration's newest ended drill, labelled with the configuration's id
        (one series per gauge and drilled configuration), and how many drill schedules are due."""
        now = utcnow()
        results = last_drill_results(self.db, [s.value for s in DRILL_MACHINE.final])
        families = [
            gauge.family("configuration_id", results, _configuration_of)
            for gauge in drill_gauges(now)
        ]
        due = GaugeMetricFamily(
            "cloudbackup_drill_schedules_due", "Drill schedules due and not yet started by a tick."
        )
        due.add_metric([], schedules_due(self.db, now))
        return [*families, due]

    def _queues(self) -> list[Metric]:
        queues = self.admin.queues()
        return [gauge.family("queue", queues, lambda q: q.name) for gauge in QUEUE_GAUGES]

    def _workers(self) -> list[Metric]:
        workers = self.admin.workers()
        return [gauge.family("worker", workers, lambda w: w.hostname) for gauge in WORKER_GAUGES]


@dataclass(frozen=True, slots=True)
class LabelledGauge(Generic[T]):
    """A gauge with one sample per queue or worker; ``value`` None: no sample for that one."""

    name: str
    help: str
    value: Callable[[T], float | None]

    def family(
        self, label: str, items: Iterable[T], label_of: Callable[[T], str]
    ) -> GaugeMetricFamily:
        family = GaugeMetricFamily(self.name, self.help, labels=[label])
        for item in items:
            value = self.value(item)
            if value is not None:
                family.add_metric([label_of(item)], value)
        return family


QUEUE_GAUGES: tuple[LabelledGauge[QueueInfo], ...] = (
    LabelledGauge("cloudbackup_queue_depth", "Messages waiting in the broker.", lambda q: q.depth),
    LabelledGauge(
        "cloudbackup_queue_oldest_age_seconds",
        "Age of the oldest message waiting in the broker.",
        lambda q: q.oldest_age_seconds or 0.0,
    ),
    LabelledGauge(
        "cloudbackup_queue_running", "Backups admitted from the queue.", lambda q: q.running
    ),
    LabelledGauge(
        "cloudbackup_queue_waiting",
        "Backups held back by a pause or a concurrency limit.",
        lambda q: q.waiting,
    ),
    LabelledGauge(
        "cloudbackup_queue_paused",
        "1 when an operator paused the queue.",
        lambda q: 1 if q.paused else 0,
    ),
)
WORKER_GAUGES: tuple[LabelledGauge[WorkerInfo], ...] = (
    LabelledGauge(
        "cloudbackup_worker_up",
        "1 while the worker's heartbeat is fresh.",
        lambda w: 1 if w.online else 0,
    ),
    LabelledGauge(
        "cloudbackup_worker_last_heartbeat_timestamp_seconds",
        "Unix time of the worker's last heartbeat.",
        lambda w: None if w.last_seen is None else w.last_seen.timestamp(),
    ),
    LabelledGauge(
        "cloudbackup_worker_running_tasks", "Tasks the worker runs now.", lambda w: len(w.running)
    ),
)


def drill_gauges(now: datetime) -> tuple[LabelledGauge[DrillResult], ...]:
    """The per-configuration drill gauges, their ages measured at ``now``."""
    return (
        LabelledGauge(
            "cloudbackup_drill_last_age_seconds",
            "Seconds since the configuration's newest restore drill ended.",
            lambda r: (now - r.ended_time).total_seconds(),
        ),
        LabelledGauge(
            "cloudbackup_drill_last_passed",
            "1 if the configuration's newest restore drill passed, else 0.",
            lambda r: 1.0 if r.state == DrillState.PASSED else 0.0,
        ),
        LabelledGauge(
            "cloudbackup_drill_last_duration_seconds",
            "Recovery time (RTO) the configuration's newest restore drill measured.",
            lambda r: r.duration_seconds,
        ),
        LabelledGauge(
            "cloudbackup_drill_last_bytes_per_second",
            "Restore and check throughput of the configuration's newest restore drill.",
            lambda r: None if r.bytes_per_second is None else float(r.bytes_per_second),
        ),
    )


def _configuration_of(result: DrillResult) -> str:
    return result.configuration_id


def _by_state_histogram(
    name: str, documentation: str, histograms: Mapping[str, Distribution]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["state"])
    for state, histogram in histograms.items():
        family.add_metric([state], *_buckets(histogram))
    return family


def _buckets(histogram: Distribution) -> tuple[list[tuple[str, float]], float]:
    """Prometheus' cumulative buckets (``le`` labels, ``+Inf`` last) and the sum."""
    buckets = [(_le(bound), float(n)) for bound, n in histogram.cumulative]
    buckets.append(("+Inf", float(histogram.count)))
    return buckets, histogram.total


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)
