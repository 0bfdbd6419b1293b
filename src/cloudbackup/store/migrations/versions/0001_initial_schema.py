"""initial schema (created 2026-11-27)"""

from cloudbackup.store.migrations.ddl import (
    big_integer,
    binary,
    boolean,
    create_listed_table,
    create_problem_table,
    create_table,
    dispatch,
    drop_listed_table,
    drop_table,
    error_summary,
    integer,
    json,
    lifecycle,
    string,
    timestamp,
    timestamps,
)

revision = "78cb1cc2fd4b"
down_revision = None

# An event is indexed on every id it is tagged with.
EVENT_INDEXES = [
    "agent_id",
    "backup_id",
    "cleanup_id",
    "configuration_id",
    "project_id",
    "restore_id",
]


def upgrade():
    create_table(
        "agent_queues",
        string("agent_id", 36),
        timestamp("pinned_at"),
        primary_key="agent_id",
    )

    create_table(
        "agents",
        string("id", 36),
        string("project_id", 64),
        string("name"),
        string("version"),
        string("host_flavor", 32),
        string("host_region", nullable=True),
        string("host_machine_id"),
        string("os_name"),
        string("os_version"),
        string("os_architecture"),
        string("fingerprint"),
        json("addresses", nullable=True),
        boolean("enabled"),
        string("rsa_modulus"),
        integer("rsa_exponent"),
        string("password_hash", 64),
        string("log_level", 16),
        string("vault_id", 36),
        string("vault_state", 32),
        string("vault_flavor", 32),
        boolean("vault_encrypted"),
        string("vault_region", nullable=True),
        boolean("vault_use_internal"),
        timestamp("registered_time"),
        boolean("deleted"),
        primary_key="id",
        unique=["vault_id"],
        indexes=["host_machine_id", "project_id"],
    )

    create_table(
        "api_tokens",
        string("id", 36),
        string("token_hash", 64),
        string("project_id", 64),
        string("roles", 255),
        string("agent_id", 36, nullable=True),
        timestamp("created_at"),
        timestamp("expires_at", nullable=True),
        timestamp("revoked_at", nullable=True),
        primary_key="id",
        indexes=["project_id"],
        unique_indexes=["token_hash"],
    )

    create_table(
        "browse_requests",
        string("id", 36),
        string("project_id", 64),
        string("kind", 8),
        string("agent_id", 36),
        string("backup_id", 36, nullable=True),
        string("path"),
        string("path_encoded", nullable=True),
        string("state", 16),
        boolean("succeeded", nullable=True),
        json("items", nullable=True),
        integer("event_id", nullable=True),
        timestamp("answered_at", nullable=True),
        timestamp("published_at", nullable=True),
        timestamp("created_at"),
        primary_key="id",
        indexes=["agent_id", "backup_id", "created_at", "project_id"],
    )

    create_table(
        "events",
        integer("id"),
        timestamp("time"),
        string("event", 64),
        string("project_id", 64),
        string("agent_id", 36, nullable=True),
        string("configuration_id", 36, nullable=True),
        string("backup_id", 36, nullable=True),
        string("restore_id", 36, nullable=True),
        string("cleanup_id", 36, nullable=True),
        json("members", nullable=True),
        primary_key="id",
        indexes=EVENT_INDEXES,
    )

    create_table(
        "idempotency_keys",
        string("id", 64),
        string("project_id", 64),
        string("fingerprint", 64),
        integer("status", nullable=True),
        json("headers", nullable=True),
        binary("body", nullable=True),
        timestamp("created_at"),
        timestamp("completed_at", nullable=True),
        primary_key="id",
        indexes=["created_at"],
    )

    create_table(
        "project_activations",
        string("project_id", 64),
        string("mode", 16),
        timestamp("mode_set_at", nullable=True),
        primary_key="project_id",
    )

    create_table(
        "queue_settings",
        string("queue", 200),
        boolean("paused"),
        integer("concurrency", nullable=True),
        timestamp("updated_at"),
        primary_key="queue",
    )

    create_table(
        "run_slots",
        string("backup_id", 36),
        string("project_id", 64),
        string("agent_id", 36),
        string("queue", 200),
        string("state", 16),
        string("reason", 200),
        timestamp("since"),
        primary_key="backup_id",
        indexes=["agent_id", "project_id", "queue", "state"],
    )

    create_table(
        "summary_settings",
        string("project_id", 64),
        boolean("daily"),
        boolean("weekly"),
        json("notifications", nullable=True),
        timestamp("updated_at"),
        primary_key="project_id",
    )

    create_table(
        "worker_heartbeats",
        string("hostname", 255),
        string("agent_id", 36, nullable=True),
        json("queues", nullable=True),
        integer("concurrency"),
        json("running", nullable=True),
        integer("pid"),
        timestamp("started_at"),
        timestamp("last_seen", nullable=True),
        primary_key="hostname",
    )

    create_table(
        "agent_presence",
        string("agent_id", 36),
        string("project_id", 64),
        string("mode", 16, nullable=True),
        timestamp("mode_set_at", nullable=True),
        timestamp("last_seen_at", nullable=True),
        timestamp("shutdown_at", nullable=True),
        primary_key="agent_id",
        foreign_keys={"agent_id": "agents"},
        indexes=["project_id"],
    )

    create_listed_table(
        "cleanups",
        string("agent_id", 36),
        string("vault_id", 36),
        *lifecycle(),
        json("snapshot_ids", nullable=True),
        *error_summary(),
        string("errors_diagnostics", nullable=True),
        big_integer("bytes_before"),
        big_integer("bytes_after"),
        string("active_lock", 36, nullable=True),
        *dispatch(),
        *timestamps(),
        foreign_keys={"agent_id": "agents"},
        unique=["active_lock"],
        indexes=["agent_id", "state"],
    )

    create_table(
        "configurations",
        string("id", 36),
        string("project_id", 64),
        string("agent_id", 36),
        string("name"),
        boolean("enabled"),
        json("schedule", nullable=True),
        integer("retention_days"),
        json("inclusions", nullable=True),
        json("exclusions", nullable=True),
        json("notifications", nullable=True),
        boolean("deleted"),
        string("last_completed_backup_id", 36, nullable=True),
        timestamp("next_scheduled_time", nullable=True),
        *timestamps(),
        primary_key="id",
        foreign_keys={"agent_id": "agents"},
        indexes=["agent_id", "project_id"],
    )

    create_listed_table(
        "logfiles",
        string("agent_id", 36),
        string("state", 16),
        timestamp("date"),
        timestamp("started_time", nullable=True),
        timestamp("completed_time", nullable=True),
        timestamp("updated_at"),
        foreign_keys={"agent_id": "agents"},
        indexes=["agent_id"],
    )

    create_listed_table(
        "backups",
        string("agent_id", 36),
        string("configuration_id", 36),
        string("vault_id", 36),
        *lifecycle(),
        integer("snapshot_id", nullable=True),
        *error_summary(),
        string("errors_diagnostics"),
        big_integer("files_searched"),
        big_integer("files_backed_up"),
        big_integer("bytes_searched"),
        big_integer("bytes_backed_up"),
        big_integer("bytes_in_db"),
        big_integer("bandwidth_avg_bps"),
        boolean("restorable"),
        string("active_manual_lock", 36, nullable=True),
        *dispatch(),
        *timestamps(),
        foreign_keys={"agent_id": "agents", "configuration_id": "configurations"},
        unique=["active_manual_lock"],
        indexes=["agent_id", "configuration_id", "state"],
    )

    create_problem_table("cleanup_errors", "cleanup_id", "cleanups", exceptions=False)

    create_problem_table("backup_errors", "backup_id", "backups", exceptions=True)

    create_listed_table(
        "restores",
        string("backup_id", 36),
        string("source_agent_id", 36),
        string("configuration_id", 36),
        string("vault_id", 36),
        integer("snapshot_id"),
        string("destination_agent_id", 36),
        string("destination_path", nullable=True),
        boolean("overwrite_files"),
        json("inclusions", nullable=True),
        json("exclusions", nullable=True),
        *lifecycle(),
        *error_summary(),
        string("errors_diagnostics"),
        big_integer("files_restored"),
        big_integer("bytes_restored"),
        *dispatch(),
        *timestamps(),
        foreign_keys={"backup_id": "backups", "destination_agent_id": "agents"},
        indexes=["backup_id", "configuration_id", "destination_agent_id", "state"],
    )

    create_problem_table("restore_errors", "restore_id", "restores", exceptions=True)


def downgrade():
    drop_table("restore_errors", indexes=["restore_id"])
    drop_listed_table(
        "restores", indexes=["backup_id", "configuration_id", "destination_agent_id", "state"]
    )
    drop_table("backup_errors", indexes=["backup_id"])
    drop_table("cleanup_errors", indexes=["cleanup_id"])
    drop_listed_table("backups", indexes=["agent_id", "configuration_id", "state"])
    drop_listed_table("logfiles", indexes=["agent_id"])
    drop_table("configurations", indexes=["agent_id", "project_id"])
    drop_listed_table("cleanups", indexes=["agent_id", "state"])
    drop_table("agent_presence", indexes=["project_id"])
    drop_table("worker_heartbeats")
    drop_table("summary_settings")
    drop_table("run_slots", indexes=["agent_id", "project_id", "queue", "state"])
    drop_table("queue_settings")
    drop_table("project_activations")
    drop_table("idempotency_keys", indexes=["created_at"])
    drop_table("events", indexes=EVENT_INDEXES)
    drop_table("browse_requests", indexes=["agent_id", "backup_id", "created_at", "project_id"])
    drop_table("api_tokens", indexes=["project_id", "token_hash"])
    drop_table("agents", indexes=["host_machine_id", "project_id"])
    drop_table("agent_queues")
