"""The migrations' builders are frozen: each one's DDL, on PostgreSQL and SQLite, is pinned here.

A failure means a builder in ``store/migrations/ddl.py`` changed what it emits, and so what the
migrations that call it (history) emit: undo the change and add a new builder instead. Only an
upgrade of SQLAlchemy or Alembic that renders the same schema in other words may re-pin.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.dialects import postgresql, sqlite

from cloudbackup.store.migrations import ddl

DIALECTS = {"postgresql": postgresql.dialect(), "sqlite": sqlite.dialect()}

# builder call -> (PostgreSQL, SQLite) column DDL
COLUMNS: dict[str, tuple[Callable[[], list[ddl.Column]], str, str]] = {
    "string": (lambda: [ddl.string("a")], "a VARCHAR NOT NULL", "a VARCHAR NOT NULL"),
    "string of a length": (
        lambda: [ddl.string("a", 36, nullable=True)],
        "a VARCHAR(36)",
        "a VARCHAR(36)",
    ),
    "integer": (lambda: [ddl.integer("a")], "a INTEGER NOT NULL", "a INTEGER NOT NULL"),
    "big_integer": (lambda: [ddl.big_integer("a")], "a BIGINT NOT NULL", "a BIGINT NOT NULL"),
    "floating": (lambda: [ddl.floating("a", nullable=True)], "a FLOAT", "a FLOAT"),
    "boolean": (lambda: [ddl.boolean("a")], "a BOOLEAN NOT NULL", "a BOOLEAN NOT NULL"),
    "text": (lambda: [ddl.text("a")], "a TEXT NOT NULL", "a TEXT NOT NULL"),
    "binary": (lambda: [ddl.binary("a", nullable=True)], "a BYTEA", "a BLOB"),
    "json": (lambda: [ddl.json("a", nullable=True)], "a JSON", "a JSON"),
    "timestamp": (
        lambda: [ddl.timestamp("a")],
        "a TIMESTAMP WITH TIME ZONE NOT NULL",
        "a DATETIME NOT NULL",
    ),
    "lifecycle": (
        ddl.lifecycle,
        "state VARCHAR(32) NOT NULL, started_time TIMESTAMP WITH TIME ZONE,"
        " ended_time TIMESTAMP WITH TIME ZONE",
        "state VARCHAR(32) NOT NULL, started_time DATETIME, ended_time DATETIME",
    ),
    "error_summary": (
        ddl.error_summary,
        "errors_count INTEGER NOT NULL, errors_reason VARCHAR NOT NULL",
        "errors_count INTEGER NOT NULL, errors_reason VARCHAR NOT NULL",
    ),
    "dispatch": (
        ddl.dispatch,
        "request_id VARCHAR(36) NOT NULL, attempts INTEGER NOT NULL,"
        " heartbeat_at TIMESTAMP WITH TIME ZONE, published_at TIMESTAMP WITH TIME ZONE",
        "request_id VARCHAR(36) NOT NULL, attempts INTEGER NOT NULL, heartbeat_at DATETIME,"
        " published_at DATETIME",
    ),
    "timestamps": (
        ddl.timestamps,
        "created_at TIMESTAMP WITH TIME ZONE NOT NULL, updated_at TIMESTAMP WITH TIME ZONE NOT NULL",
        "created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL",
    ),
    "problem": (
        ddl.problem,
        "index INTEGER NOT NULL, path VARCHAR NOT NULL, type VARCHAR(64) NOT NULL",
        '"index" INTEGER NOT NULL, path VARCHAR NOT NULL, type VARCHAR(64) NOT NULL',  # a keyword
    ),
    "exception": (
        ddl.exception,
        "exception_code INTEGER, exception_description VARCHAR, exception_details VARCHAR",
        "exception_code INTEGER, exception_description VARCHAR, exception_details VARCHAR",
    ),
}


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
@pytest.mark.parametrize("builder", sorted(COLUMNS))
def test_a_column_builder_compiles_to_its_pinned_ddl(builder, dialect):
    build, on_postgresql, on_sqlite = COLUMNS[builder]
    table = sa.Table("t", sa.MetaData(), *build())
    compiled = ", ".join(
        str(sa.schema.CreateColumn(column).compile(dialect=DIALECTS[dialect]))
        for column in table.columns
    )
    assert compiled == (on_postgresql if dialect == "postgresql" else on_sqlite)


def _offline(dialect: str, build: Callable[[], None]) -> list[str]:
    """The statements ``build`` emits through ``op`` (Alembic's offline mode), one per item."""
    out = io.StringIO()
    context = MigrationContext.configure(
        dialect_name=dialect, opts={"as_sql": True, "output_buffer": out}
    )
    with Operations.context(context):
        build()
    return [" ".join(s.split()) for s in out.getvalue().split(";") if s.strip()]


def test_create_table_emits_columns_keys_constraints_then_indexes_in_name_order():
    emitted = _offline(
        "postgresql",
        lambda: ddl.create_table(
            "things",
            ddl.string("id", 36),
            ddl.string("owner_id", 36),
            ddl.string("name"),
            ddl.timestamp("created_at"),
            sa.UniqueConstraint("owner_id", "name", name="uq_things_owner_name"),
            primary_key="id",
            foreign_keys={"owner_id": "owners"},
            unique=["name"],
            indexes=["owner_id", "created_at"],
            unique_indexes=["id"],
        ),
    )
    assert emitted == [
        "CREATE TABLE things ( id VARCHAR(36) NOT NULL, owner_id VARCHAR(36) NOT NULL,"
        " name VARCHAR NOT NULL, created_at TIMESTAMP WITH TIME ZONE NOT NULL,"
        " CONSTRAINT pk_things PRIMARY KEY (id),"
        " CONSTRAINT uq_things_owner_name UNIQUE (owner_id, name),"
        " CONSTRAINT fk_things_owner_id_owners FOREIGN KEY(owner_id) REFERENCES owners (id),"
        " CONSTRAINT uq_things_name UNIQUE (name) )",
        "CREATE INDEX ix_things_created_at ON things (created_at)",
        "CREATE UNIQUE INDEX ix_things_id ON things (id)",
        "CREATE INDEX ix_things_owner_id ON things (owner_id)",
    ]


def test_a_composite_primary_key_and_no_indexes():
    emitted = _offline(
        "sqlite",
        lambda: ddl.create_table("pairs", ddl.string("a"), ddl.string("b"), primary_key=("a", "b")),
    )
    assert emitted == [
        "CREATE TABLE pairs ( a VARCHAR NOT NULL, b VARCHAR NOT NULL,"
        " CONSTRAINT pk_pairs PRIMARY KEY (a, b) )"
    ]


@pytest.mark.parametrize(
    ("dialect", "seq", "time"),
    [("postgresql", "SERIAL", "TIMESTAMP WITH TIME ZONE"), ("sqlite", "INTEGER", "DATETIME")],
)
def test_a_listed_table_starts_with_seq_id_and_project_and_indexes_them(dialect, seq, time):
    emitted = _offline(
        dialect,
        lambda: ddl.create_listed_table(
            "runs",
            ddl.string("agent_id", 36),
            ddl.timestamp("ended_time", nullable=True),
            foreign_keys={"agent_id": "agents"},
            unique=["agent_id"],
            indexes=["agent_id"],
        ),
    )
    assert emitted == [
        f"CREATE TABLE runs ( seq {seq} NOT NULL, id VARCHAR(36) NOT NULL,"
        f" project_id VARCHAR(64) NOT NULL, agent_id VARCHAR(36) NOT NULL, ended_time {time},"
        " CONSTRAINT pk_runs PRIMARY KEY (seq),"
        " CONSTRAINT fk_runs_agent_id_agents FOREIGN KEY(agent_id) REFERENCES agents (id),"
        " CONSTRAINT uq_runs_agent_id UNIQUE (agent_id) )",
        "CREATE INDEX ix_runs_agent_id ON runs (agent_id)",
        "CREATE UNIQUE INDEX ix_runs_id ON runs (id)",
        "CREATE INDEX ix_runs_project_id ON runs (project_id)",
    ]
    assert _offline(dialect, lambda: ddl.drop_listed_table("runs", indexes=["agent_id"])) == [
        "DROP INDEX ix_runs_project_id",
        "DROP INDEX ix_runs_id",
        "DROP INDEX ix_runs_agent_id",
        "DROP TABLE runs",
    ]


@pytest.mark.parametrize("exceptions", [False, True])
def test_a_problem_table_refers_to_its_run_and_indexes_it(exceptions):
    emitted = _offline(
        "postgresql",
        lambda: ddl.create_problem_table("run_errors", "run_id", "runs", exceptions=exceptions),
    )
    extra = (
        " exception_code INTEGER, exception_description VARCHAR, exception_details VARCHAR,"
        if exceptions
        else ""
    )
    assert emitted == [
        "CREATE TABLE run_errors ( pk SERIAL NOT NULL, run_id VARCHAR(36) NOT NULL,"
        " index INTEGER NOT NULL, path VARCHAR NOT NULL, type VARCHAR(64) NOT NULL,"
        f"{extra} CONSTRAINT pk_run_errors PRIMARY KEY (pk),"
        " CONSTRAINT fk_run_errors_run_id_runs FOREIGN KEY(run_id) REFERENCES runs (id) )",
        "CREATE INDEX ix_run_errors_run_id ON run_errors (run_id)",
    ]


def test_indexes_are_dropped_in_the_reverse_order_of_their_names():
    def build() -> None:
        ddl.create_indexes("things", ["b", "a"], unique=["c"])
        ddl.drop_indexes("things", ["a", "c", "b"])
        ddl.drop_table("things", indexes=["x", "y"])
        ddl.drop_table("plain")

    assert _offline("postgresql", build) == [
        "CREATE INDEX ix_things_a ON things (a)",
        "CREATE INDEX ix_things_b ON things (b)",
        "CREATE UNIQUE INDEX ix_things_c ON things (c)",
        "DROP INDEX ix_things_c",
        "DROP INDEX ix_things_b",
        "DROP INDEX ix_things_a",
        "DROP INDEX ix_things_y",
        "DROP INDEX ix_things_x",
        "DROP TABLE things",
        "DROP TABLE plain",
    ]
