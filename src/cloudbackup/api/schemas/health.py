"""Health bodies (spec §12, OQ-28): ``{category: {system: {online, ..., links: [self]}}}``."""

from __future__ import annotations

from typing import Any

from cloudbackup.api.links import LinkBuilder
from cloudbackup.domain.health import Check, HealthReport


def check_out(check: Check, links: LinkBuilder) -> dict[str, Any]:
    self_link = links.link("self", "health", check.category, check.system)
    return {
        "online": check.online,
        **check.extra,
        "links": [{"href": self_link.href, "rel": self_link.rel}],
    }


def report_out(report: HealthReport, links: LinkBuilder) -> dict[str, Any]:
    body: dict[str, dict[str, Any]] = {}
    for check in report.checks:
        body.setdefault(check.category, {})[check.system] = check_out(check, links)
    return body
