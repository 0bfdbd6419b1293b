"""Listing a project's rows a page at a time (runs of every kind, anomalies): in ``seq`` order,
after a marker that is the id of one of the project's rows."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from cloudbackup.domain.errors import InvalidInput
from cloudbackup.store.db import Database
from cloudbackup.store.repositories import Page, ProjectRows, SortDir

RowT = TypeVar("RowT")


def marker_seq(
    marker: str | None, project_id: str, seq_of: Callable[[str, str], int | None], noun: str
) -> int | None:
    """The ``seq`` a page of the project's rows starts after: the ``marker``'s (``seq_of`` it;
    a 400 when the project has no such ``noun``), or None for the first page."""
    if marker is None:
        return None
    seq = seq_of(marker, project_id)
    if seq is None:
        article = "an" if noun[0] in "aeiou" else "a"
        raise InvalidInput(
            "Validation failed.", [f"marker {marker!r} is not {article} {noun} of this project."]
        )
    return seq


class ProjectPages(ABC, Generic[RowT]):
    """A service whose resource lists the project's rows of one repository."""

    db: Database

    @property
    @abstractmethod
    def noun(self) -> str:
        """What a row is, in the 400 for a marker naming none of the project's."""

    @abstractmethod
    def rows(self, session: Session) -> ProjectRows[RowT]:
        """The repository of the rows listed."""

    def check_filters(self, filters: Mapping[str, Any]) -> None:
        """What the resource checks of a list's filters before it reads (nothing by default)."""

    def page(
        self,
        project_id: str,
        *,
        marker: str | None,
        limit: int,
        sort_dir: SortDir,
        **filters: Any,
    ) -> Page[RowT]:
        """A page of the project's rows after ``marker`` (a row's id); ``filters`` name columns
        and the values they must hold (None: any), e.g. a backup's ``restorable``."""
        self.check_filters(filters)
        with self.db.read() as session:
            repo = self.rows(session)
            after = marker_seq(marker, project_id, repo.seq_of, self.noun)
            return repo.page(
                project_id, marker_seq=after, limit=limit, sort_dir=sort_dir, **filters
            )
