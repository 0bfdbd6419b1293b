"""Finding a vault from the settings: its storage backend and, when encrypted, its password.

A worker obtains a vault's password from ``<vault_key_dir>/<vault_id>.key``: a regular file
readable by the worker's user only (mode 0600 or stricter). No such file means the vault is not
encrypted. The password is read for each opening and never stored anywhere else.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from cloudbackup.engine.errors import VaultError
from cloudbackup.engine.storage import LocalStorage, S3Storage, Storage, new_s3_client
from cloudbackup.engine.vault import Vault

_VAULT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")


class VaultLocation(Protocol):
    """The settings the engine needs (``cloudbackup.settings.Settings`` has them all)."""

    @property
    def resolved_vault_path(self) -> Path: ...

    @property
    def vault_url(self) -> str: ...

    @property
    def vault_key_dir(self) -> str: ...

    @property
    def s3_endpoint_url(self) -> str: ...

    @property
    def s3_region(self) -> str: ...

    @property
    def s3_access_key_id(self) -> str: ...

    @property
    def s3_secret_access_key(self) -> str: ...


def _check_id(vault_id: str) -> str:
    if not _VAULT_ID.fullmatch(vault_id):
        raise VaultError(f"invalid vault id {vault_id!r}")
    return vault_id


def vault_storage(settings: VaultLocation, vault_id: str) -> Storage:
    """The storage of one vault: ``<root>/<vault_id>`` locally, ``<prefix>/<vault_id>/`` in S3."""
    _check_id(vault_id)
    url = settings.vault_url
    if not url:
        return LocalStorage(settings.resolved_vault_path / vault_id)
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalStorage(Path(parsed.path) / vault_id)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise VaultError(f"unsupported vault URL {url!r}: use s3://bucket/prefix or file:///path")
    prefix = "/".join(p for p in (parsed.path.strip("/"), vault_id) if p)
    client = _s3_client(
        settings.s3_endpoint_url,
        settings.s3_region,
        settings.s3_access_key_id,
        settings.s3_secret_access_key,
    )
    return S3Storage(parsed.netloc, prefix, client=client)


@lru_cache(maxsize=8)
def _s3_client(endpoint: str, region: str, key_id: str, secret: str) -> Any:
    # One client per configuration: creating one costs tens of milliseconds; they are thread-safe.
    return new_s3_client(endpoint, region, key_id, secret)


def read_vault_password(key_dir: Path | str, vault_id: str) -> str | None:
    """The password of an encrypted vault from its key file, or None when there is no file."""
    if not key_dir:
        return None
    path = Path(key_dir) / f"{_check_id(vault_id)}.key"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise VaultError(f"vault key file {path} may not be a symbolic link") from None
        raise VaultError(f"cannot read vault key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise VaultError(f"vault key file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise VaultError(
                f"vault key file {path} is readable or writable by others: chmod 600 it"
            )
        text = f.read().decode("utf-8").rstrip("\r\n")
    if not text:
        raise VaultError(f"vault key file {path} is empty")
    return text


def open_vault(settings: VaultLocation, vault_id: str, *, create: bool = True) -> Vault:
    """Open (or, with ``create``, start) the vault ``vault_id`` as the settings say."""
    password = read_vault_password(settings.vault_key_dir, vault_id)
    return Vault(vault_storage(settings, vault_id), password=password, create=create)
