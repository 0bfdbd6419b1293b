"""Absolute links (`href`) from the request's base URL, including `/v2/{project_id}` (OQ-2)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request

from cloudbackup.api.schemas.common import Link, Ref


class LinkBuilder:
    def __init__(self, request: Request[Any, Any, Any], project_id: str) -> None:
        self.base = f"{str(request.base_url).rstrip('/')}/v2/{project_id}"

    def href(self, *parts: str, query: dict[str, str] | None = None) -> str:
        url = "/".join([self.base, *parts])
        return f"{url}?{urlencode(query)}" if query else url

    def link(self, rel: str, *parts: str, query: dict[str, str] | None = None) -> Link:
        return Link(href=self.href(*parts, query=query), rel=rel)

    def ref(self, collection: str, item_id: str) -> Ref:
        """An embedded reference (spec §2.1): id plus one `full` link."""
        return Ref(id=item_id, links=[self.link("full", collection, item_id)])
