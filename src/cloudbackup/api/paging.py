"""Top-level `links` of paged lists (spec §1.6, decisions in docs/decisions.md, OQ-6).

`next` = same path and filters with `marker` = the last item's id, only when more items exist;
`previous` = `marker` = the first item's id with the opposite `sort_dir`, only when the request
itself started after a marker (the first page has nothing before it).
"""

from __future__ import annotations

from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.schemas.common import Link


def page_links(
    links: LinkBuilder,
    parts: tuple[str, ...],
    *,
    first_id: str | None,
    last_id: str | None,
    has_more: bool,
    marker_given: bool,
    limit: int,
    sort_dir: str,
    default_sort_dir: str,
    filters: dict[str, str] | None = None,
) -> list[Link]:
    base = dict(filters or {})
    if limit != 100:
        base["limit"] = str(limit)
    result: list[Link] = []
    if has_more and last_id is not None:
        query = {**base, "marker": last_id}
        if sort_dir != default_sort_dir:
            query["sort_dir"] = sort_dir
        result.append(links.link("next", *parts, query=query))
    if marker_given and first_id is not None:
        opposite = "asc" if sort_dir == "desc" else "desc"
        result.append(
            links.link("previous", *parts, query={**base, "marker": first_id, "sort_dir": opposite})
        )
    return result
