"""All settings in one typed object, read from ``CLOUDBACKUP_*`` environment variables.

Defaults describe the embedded set-up (a SQLite file and a vault folder under ``data_dir``), so a
fresh clone runs without any server installed by hand.
"""

from __future__ import annotations

import os
import posixpath
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec

PREFIX = "CLOUDBACKUP_"
# `cloudbackup dev` writes its embedded broker's address here, in the data folder, so that every
# server-side command run against that folder (queues, agent worker, token...) finds it.
DEV_BROKER_FILE = "dev-broker-url"
DEFAULT_DATA_DIR = ".cloudbackup"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Process-wide configuration. Every field maps to ``CLOUDBACKUP_<FIELD>``."""

    data_dir: str = DEFAULT_DATA_DIR
    database_url: str = ""  # empty: sqlite:///<data_dir>/cloudbackup.db
    broker_url: str = ""  # empty: only valid for `cloudbackup dev`, which starts an embedded Redis
    vault_path: str = ""  # empty: <data_dir>/vault
    # Seconds to wait for a database connection before the API answers 503.
    database_connect_timeout: int = 3
    # Seconds a publish to the broker may take before the sweeper is left to retry it.
    broker_publish_timeout: float = 2.0
    # Celery queue that carries backup runs.
    backup_queue: str = "backups"
    # Longest backup expected to run (seconds); the Redis visibility timeout is set above it.
    max_backup_seconds: int = 6 * 3600
    # Counters of a running backup are written at least this often (seconds).
    progress_interval: float = 0.5
    # Bytes per second a backup may read; 0 means unlimited (the spec's agents upload ~2 MB/s).
    backup_max_bps: int = 0
    # Seconds between two checkpoints of a running backup (what it stored, for a resumed run).
    backup_checkpoint_seconds: float = 2.0
    # A backup left in start_requested/start_scheduled longer than this (seconds) is re-published.
    sweep_after_seconds: int = 30
    # A running backup whose heartbeat is older than this (seconds) is considered abandoned.
    heartbeat_timeout_seconds: int = 60
    # How many times an abandoned backup is re-driven before it ends `failed`.
    max_attempts: int = 3
    # Seconds a verified API token stays cached in the API process.
    token_cache_seconds: float = 10.0
    # Threads that run the API's database work (per API process).
    api_threads: int = 2
    # PostgreSQL connections of the API's asyncio pool (B1's path), per API process.
    api_database_pool_size: int = 20
    log_level: str = "INFO"
    # -- operations (schedules, queues, limits, metrics, logs) --------------------------------
    # `json` (one JSON object per line, for log shippers) or `console` (for people).
    log_format: str = "json"
    # Seconds between scheduler ticks (beat runs them); a tick fires every due configuration.
    schedule_tick_seconds: float = 10.0
    # A scheduled run that has not started this many seconds after it was due ends `missed`.
    schedule_window_seconds: int = 3600
    # Running backups allowed at once per agent / per project (0 = no limit); excess waits.
    max_running_per_agent: int = 2
    max_running_per_project: int = 8
    # Seconds the API caches which agents are pinned to their own queue.
    routing_cache_seconds: float = 5.0
    # Seconds between a worker's heartbeats (which also apply queue pauses to it).
    worker_sync_seconds: float = 5.0
    # A worker whose last heartbeat is older than this (seconds) is shown offline.
    worker_offline_seconds: int = 30
    # On SIGQUIT (or SIGTERM with REMAP_SIGTERM=SIGQUIT) running tasks get this long to finish
    # before they are handed back to the queue; keep a pod's grace period above it.
    worker_soft_shutdown_seconds: float = 60.0
    # Project whose admin tokens may use /v2/admin/* (queue administration).
    admin_project: str = "operator"
    # GET /metrics needs an operator project token or `Authorization: Bearer <metrics_token>`
    # (if set), unless metrics_public opens it to anyone who can reach the port.
    metrics_token: str = ""
    metrics_public: bool = False
    # -- restores, browsing, cleanups -------------------------------------------------------
    # Bytes per second a restore may write; 0 means unlimited.
    restore_max_bps: int = 0
    # Seconds a browse result (B6/A11) stays readable after the worker answered (spec: ~1 min).
    browse_result_seconds: float = 60.0
    # Most entries one browse answer lists (a directory may hold millions).
    browse_max_items: int = 10_000
    # Share of the vault's packs a cleanup reads back and checks (0 = skip verification).
    cleanup_verify_fraction: float = 1.0
    # -- reliability (fault tolerance, input limits, agent tokens) -----------------------------
    # Folders (`:`-separated absolute paths) that inclusions, restore destinations and browse
    # paths must lie in, for agents without roots of their own (`cloudbackup roots`); empty
    # means nothing is allowed. Workers also refuse symlinks leading out of them, and the
    # service's own files are refused whatever the roots (domain/roots.py).
    allowed_roots: str = ""
    # Seconds a POST's Idempotency-Key (and the response it recorded) is remembered.
    idempotency_ttl_seconds: int = 24 * 3600
    # Lifetime (seconds) of a token an agent obtains with its id and password (A9).
    agent_token_ttl_seconds: int = 24 * 3600
    # Seconds a worker keeps retrying a write while the database is unreachable.
    database_retry_seconds: float = 120.0
    # Redis re-delivers a task not acknowledged within this many seconds; 0 means
    # max_backup_seconds + 600 (a healthy run is never delivered twice). Tests shorten it.
    broker_visibility_timeout: int = 0
    # -- events, health (the rest of the v2 surface) --------------------------------------------
    # Hours events are kept before the sweep deletes them (the spec's events live ~1 minute;
    # we keep them long enough to read a whole backup's events afterwards).
    event_retention_hours: float = 24.0
    # Seconds each health check (database, broker) may take before it counts as down.
    health_timeout_seconds: float = 1.0
    # -- vault storage (the engine) -------------------------------------------------------------
    # Where vaults live: empty = the folder vault_path; `s3://bucket/prefix` = an S3-compatible
    # store (each vault under <prefix>/<vault_id>/); `file:///path` = another local folder.
    vault_url: str = ""
    # S3 endpoint (e.g. http://127.0.0.1:9000 for MinIO; empty = AWS), region and credentials
    # (empty = boto3's usual chain: AWS_* variables, config files, instance roles).
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    # Folder of per-vault password files `<vault_id>.key` (mode 0600, readable by the worker
    # only); empty = <data_dir>/keys. Every new vault is encrypted: with the password of its key
    # file, or, when it has none, a random one the worker writes there first (folder 0700). Back
    # this folder up apart from the vaults: without its key file a vault cannot be read.
    vault_key_dir: str = ""
    # -- mail (backup notifications) -------------------------------------------------------------
    # smtp://host:port or smtps://user:password@host:465; empty = no mail is sent (/health says so).
    smtp_url: str = ""
    mail_from: str = "cloudbackup@localhost"
    # The address users reach the service at, for the links in mail.
    public_url: str = "http://127.0.0.1:8000"
    # Seconds between the notifier's passes over the event stream (beat runs them).
    notify_interval_seconds: float = 10.0
    # Seconds between retention passes (beat runs them): expired backups get a cleanup.
    retention_interval_seconds: float = 3600.0
    # -- behind a proxy ---------------------------------------------------------------------------
    # Peers (addresses or networks, comma-separated) whose X-Forwarded-Proto/-Host are believed.
    trusted_proxies: str = ""
    # -- webhooks --------------------------------------------------------------------------------
    # Allow webhook URLs on loopback, private or link-local addresses (tests, closed networks).
    webhook_allow_private: bool = False
    # Seconds one POST may take (connect, send, answer) before it counts as failed.
    webhook_timeout_seconds: float = 10.0
    # The first retry of a failed delivery waits this long; each next one twice as long (capped
    # at an hour), until the delivery is webhook_retry_hours old; then it is given up.
    webhook_first_retry_seconds: float = 5.0
    webhook_retry_hours: float = 72.0
    # Seconds between beat's passes publishing the deliveries that came due (retries).
    webhook_sweep_seconds: float = 2.0
    # Days a finished delivery (its body and attempts) is kept: the window a replay can reach.
    webhook_delivery_retention_days: float = 7.0
    # -- the ransomware guard (docs/decisions.md, "The ransomware guard") -----------------------
    # A completed backup is an anomaly when, against the previous snapshot of its inclusions
    # (which held at least anomaly_min_files files), at least anomaly_changed_ratio of the files
    # changed or are gone, and its new data compressed to at least anomaly_compressed_size_ratio
    # of its size (stored / plaintext), anomaly_compression_rise or more above the configuration's
    # earlier backups (0 also flags trees that never compressed). A ratio above 1 turns it off.
    anomaly_changed_ratio: float = 0.5
    anomaly_compressed_size_ratio: float = 0.9
    anomaly_compression_rise: float = 0.1
    anomaly_min_files: int = 20

    @property
    def allowed_root_list(self) -> tuple[str, ...]:
        """``allowed_roots`` as normalized absolute folders (no trailing ``/``; ``/`` stays)."""
        roots = [part.strip() for part in self.allowed_roots.split(":") if part.strip()]
        relative = [root for root in roots if not root.startswith("/")]
        if relative:
            raise SystemExit(f"{PREFIX}ALLOWED_ROOTS must hold absolute paths, not {relative}")
        return tuple("/" + posixpath.normpath(root).lstrip("/") for root in roots)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'cloudbackup.db'}"

    @property
    def resolved_vault_path(self) -> Path:
        return Path(self.vault_path or Path(self.data_dir) / "vault").resolve()

    @property
    def resolved_vault_key_dir(self) -> Path:
        return Path(self.vault_key_dir or Path(self.data_dir) / "keys").resolve()


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from the environment; unknown ``CLOUDBACKUP_*`` variables are ignored."""
    env = os.environ if environ is None else environ
    fields = {f.lower() for f in Settings.__struct_fields__}
    raw: dict[str, Any] = {}
    for key, value in env.items():
        if key.startswith(PREFIX) and key[len(PREFIX) :].lower() in fields:
            raw[key[len(PREFIX) :].lower()] = value
    if not raw.get("broker_url"):
        recorded = Path(raw.get("data_dir") or DEFAULT_DATA_DIR) / DEV_BROKER_FILE
        if recorded.is_file():
            raw["broker_url"] = recorded.read_text().strip()
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SystemExit(f"Invalid {PREFIX}* setting: {exc}") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return load_settings()
