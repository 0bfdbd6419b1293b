"""The column, table and index builders the migrations call.

FROZEN BY CONTRACT: what every function here emits must never change, because the migrations
that ran with it are history (databases upgraded years ago were built by today's output).
A migration that needs another column, type or name writes its own, or a new function is added
here; an existing one is never edited to suit it. tests/unit/store/migrations/test_ddl.py pins
the DDL each builder compiles to, and the DDL of the whole migration history, so a change fails.

Names follow the metadata's naming convention as Alembic's autogenerate wrote them:
``pk_<table>``, ``fk_<table>_<column>_<referred table>``, ``uq_<table>_<column>`` and
``ix_<table>_<column>``; each is passed through ``op.f`` (already final, not converted again).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

Column = sa.Column[Any]


def string(name: str, length: int | None = None, *, nullable: bool = False) -> Column:
    """A VARCHAR (sqlmodel's ``AutoString``), of ``length`` when given."""
    kind = AutoString() if length is None else AutoString(length=length)
    return sa.Column(name, kind, nullable=nullable)


class ColumnOf(Protocol):
    """A builder of one column of a fixed type: ``integer("attempts")``."""

    def __call__(self, name: str, *, nullable: bool = False) -> Column: ...


def _of(kind: Callable[[], sa.types.TypeEngine[Any]]) -> ColumnOf:
    def build(name: str, *, nullable: bool = False) -> Column:
        return sa.Column(name, kind(), nullable=nullable)

    return build


integer = _of(sa.Integer)
big_integer = _of(sa.BigInteger)
floating = _of(sa.Float)
boolean = _of(sa.Boolean)
text = _of(sa.Text)
binary = _of(sa.LargeBinary)
json = _of(sa.JSON)
# A time with its zone: every stored time is UTC.
timestamp = _of(lambda: sa.DateTime(timezone=True))


def lifecycle() -> list[Column]:
    """The state of a run and when it started and ended."""
    return [
        string("state", 32),
        timestamp("started_time", nullable=True),
        timestamp("ended_time", nullable=True),
    ]


def error_summary() -> list[Column]:
    """How many per-file problems a run had, and why it failed."""
    return [integer("errors_count"), string("errors_reason")]


def dispatch() -> list[Column]:
    """The bookkeeping of a queued run: its request, attempts, heartbeat and publish time."""
    return [
        string("request_id", 36),
        integer("attempts"),
        timestamp("heartbeat_at", nullable=True),
        timestamp("published_at", nullable=True),
    ]


def timestamps() -> list[Column]:
    """When a row was created and last updated."""
    return [timestamp("created_at"), timestamp("updated_at")]


def problem() -> list[Column]:
    """One per-file problem of a run: its place in the list, the path and the kind."""
    return [integer("index"), string("path"), string("type", 64)]


def exception() -> list[Column]:
    """The exception behind a per-file problem (backups, restores and drills)."""
    return [
        integer("exception_code", nullable=True),
        string("exception_description", nullable=True),
        string("exception_details", nullable=True),
    ]


def create_table(
    name: str,
    *items: sa.schema.SchemaItem,
    primary_key: str | Sequence[str],
    foreign_keys: Mapping[str, str] | None = None,
    unique: Sequence[str] = (),
    indexes: Sequence[str] = (),
    unique_indexes: Sequence[str] = (),
) -> None:
    """Create a table from its columns (and any other constraint in ``items``), then its indexes.

    ``foreign_keys`` maps a column to the table whose ``id`` it refers to; ``unique`` names the
    columns with a unique constraint; ``indexes`` and ``unique_indexes`` the columns with a
    one-column index, created in the order of their names.
    """
    columns = [primary_key] if isinstance(primary_key, str) else list(primary_key)
    op.create_table(
        name,
        *items,
        *(
            sa.ForeignKeyConstraint(
                [column], [f"{referred}.id"], name=op.f(f"fk_{name}_{column}_{referred}")
            )
            for column, referred in (foreign_keys or {}).items()
        ),
        sa.PrimaryKeyConstraint(*columns, name=op.f(f"pk_{name}")),
        *(sa.UniqueConstraint(column, name=op.f(f"uq_{name}_{column}")) for column in unique),
    )
    create_indexes(name, indexes, unique=unique_indexes)


def create_listed_table(
    name: str,
    *items: sa.schema.SchemaItem,
    foreign_keys: Mapping[str, str] | None = None,
    unique: Sequence[str] = (),
    indexes: Sequence[str] = (),
) -> None:
    """A table of rows listed in pages (runs, anomalies, log files): ``seq`` (the primary key)
    orders them, ``id`` (a unique index) names them, ``project_id`` (indexed) scopes them."""
    create_table(
        name,
        integer("seq"),
        string("id", 36),
        string("project_id", 64),
        *items,
        primary_key="seq",
        foreign_keys=foreign_keys,
        unique=unique,
        indexes=[*indexes, "project_id"],
        unique_indexes=["id"],
    )


def create_indexes(table: str, columns: Sequence[str], *, unique: Sequence[str] = ()) -> None:
    """One index per column, ``unique`` ones unique, created in the order of their names."""
    if not columns and not unique:
        return
    with op.batch_alter_table(table, schema=None) as batch_op:
        for column in sorted({*columns, *unique}):
            batch_op.create_index(
                batch_op.f(f"ix_{table}_{column}"), [column], unique=column in unique
            )


def drop_indexes(table: str, columns: Sequence[str]) -> None:
    """Drop the one-column indexes of ``columns``: the reverse of ``create_indexes``."""
    if not columns:
        return
    with op.batch_alter_table(table, schema=None) as batch_op:
        for column in sorted(columns, reverse=True):
            batch_op.drop_index(batch_op.f(f"ix_{table}_{column}"))


def drop_table(name: str, *, indexes: Sequence[str] = ()) -> None:
    """Drop a table's indexes (unique ones included), then the table."""
    drop_indexes(name, indexes)
    op.drop_table(name)


def drop_listed_table(name: str, *, indexes: Sequence[str] = ()) -> None:
    """Drop a table ``create_listed_table`` made (``indexes`` as given to it)."""
    drop_table(name, indexes=[*indexes, "id", "project_id"])


def create_problem_table(name: str, run_column: str, run_table: str, *, exceptions: bool) -> None:
    """A run's per-file problems: ``pk``, the run's id (indexed), the problem, its exception."""
    create_table(
        name,
        integer("pk"),
        string(run_column, 36),
        *problem(),
        *(exception() if exceptions else ()),
        primary_key="pk",
        foreign_keys={run_column: run_table},
        indexes=[run_column],
    )
