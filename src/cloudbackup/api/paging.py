"""Top-level `links` of paged lists (spec §1.6, decisions in docs/decisions.md, OQ-6).

`next` = same path and filters with `marker` = the last item's id, only when more items exist;
`previous` = `marker` = the first item's id with the opposite `sort_dir`, only when the request
itself started after a marker (the first page has nothing before it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from litestar.di import NamedDependency, Provide

from cloudbackup.api.body import page_limit, sort_direction
from cloudbackup.api.call import ApiCall, Query
from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.schemas.common import Link
from cloudbackup.store.repositories import Page, SortDir


class Identified(Protocol):
    """A listed row: its ``id`` is what a ``marker`` names."""

    @property
    def id(self) -> object: ...


RowT = TypeVar("RowT", bound=Identified)
OutT = TypeVar("OutT")


@dataclass(frozen=True)
class ListQuery:
    """The paging query of a list request as sent; ``paged_list`` checks it."""

    marker: str | None = None
    limit: str | None = None
    sort_dir: str | None = None


def list_query(marker: Query = None, limit: Query = None, sort_dir: Query = None) -> ListQuery:
    return ListQuery(marker, limit, sort_dir)


# The app provides ``paging`` (like ``call``); a list handler takes
# ``paging: Paging`` where it would take the three query parameters (the OpenAPI document lists
# them at that place, as if the handler declared them).
PAGING = {"paging": Provide(list_query, sync_to_thread=False)}
Paging = NamedDependency[ListQuery]


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


def paged_list(
    call: ApiCall,
    parts: tuple[str, ...],
    fetch: Callable[[int, SortDir], Page[RowT]],
    render: Callable[[RowT, LinkBuilder], OutT],
    paging: ListQuery,
    *,
    default_sort_dir: SortDir = "desc",
    filters: dict[str, str] | None = None,
) -> tuple[list[OutT], list[Link]]:
    """A list request's items and ``links``: ``limit`` and ``sort_dir`` of ``paging`` checked
    (400), then the rows of ``fetch(limit, sort_dir)`` rendered with ``render(row, links)``."""
    size = page_limit(paging.limit)
    order: SortDir = "asc" if sort_direction(paging.sort_dir, default_sort_dir) == "asc" else "desc"
    page = fetch(size, order)
    return [render(row, call.links) for row in page.items], page_links(
        call.links,
        parts,
        first_id=str(page.items[0].id) if page.items else None,
        last_id=str(page.items[-1].id) if page.items else None,
        has_more=page.has_more,
        marker_given=paging.marker is not None,
        limit=size,
        sort_dir=order,
        default_sort_dir=default_sort_dir,
        filters=filters,
    )


def paged_rows(
    call: ApiCall,
    parts: tuple[str, ...],
    page: Callable[..., Page[RowT]],
    render: Callable[[RowT, LinkBuilder], OutT],
    paging: ListQuery,
    *,
    filters: dict[str, str] | None = None,
    **arguments: Any,
) -> tuple[list[OutT], list[Link]]:
    """:func:`paged_list` over a service's ``page(project_id, marker=, limit=, sort_dir=,
    **arguments)``: the project's rows after ``paging.marker``."""
    return paged_list(
        call,
        parts,
        lambda size, order: page(
            call.project_id, marker=paging.marker, limit=size, sort_dir=order, **arguments
        ),
        render,
        paging,
        filters=filters,
    )
