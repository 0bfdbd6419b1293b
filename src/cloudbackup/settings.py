"""All settings in one typed object, read from ``CLOUDBACKUP_*`` environment variables.

Defaults describe the embedded set-up (a SQLite file and a vault folder under ``data_dir``), so a
fresh clone runs without any server installed by hand.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec

PREFIX = "CLOUDBACKUP_"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Process-wide configuration. Every field maps to ``CLOUDBACKUP_<FIELD>``."""

    data_dir: str = ".cloudbackup"
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
    log_level: str = "INFO"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'cloudbackup.db'}"

    @property
    def resolved_vault_path(self) -> Path:
        return Path(self.vault_path or Path(self.data_dir) / "vault").resolve()


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from the environment; unknown ``CLOUDBACKUP_*`` variables are ignored."""
    env = os.environ if environ is None else environ
    fields = {f.lower() for f in Settings.__struct_fields__}
    raw: dict[str, Any] = {}
    for key, value in env.items():
        if key.startswith(PREFIX) and key[len(PREFIX) :].lower() in fields:
            raw[key[len(PREFIX) :].lower()] = value
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SystemExit(f"Invalid {PREFIX}* setting: {exc}") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return load_settings()
