"""Finding a vault from the settings: its storage backend and its password.

A worker obtains a vault's password from ``<key folder>/<vault_id>.key`` (the key folder is
``vault_key_dir``, by default ``<data_dir>/keys``): a regular file readable by the worker's user
only (mode 0600 or stricter). Every new vault is encrypted: when its key file does not exist yet,
the worker writes one with a random password first. A vault without a key file is opened only if
it is a format-2 vault made without a password (an existing tenant's); one whose config is
encrypted, or that the database records as encrypted, fails with :class:`VaultKeyMissing`. The
password is read for each opening and never stored anywhere else.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from cloudbackup.engine.crypto import KDF_FLOOR
from cloudbackup.engine.errors import VaultError, VaultKeyMissing
from cloudbackup.engine.keys import read_config
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
    def resolved_vault_key_dir(self) -> Path: ...

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


def key_file(key_dir: Path | str, vault_id: str) -> Path:
    """Where the key file of ``vault_id`` lives."""
    return Path(key_dir) / f"{_check_id(vault_id)}.key"


def read_vault_password(key_dir: Path | str, vault_id: str) -> str | None:
    """The password of a vault from its key file, or None when there is no file."""
    if not key_dir:
        return None
    path = key_file(key_dir, vault_id)
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


def create_vault_key(key_dir: Path, vault_id: str) -> str:
    """Write a random password as the key file of ``vault_id`` (0600, folder 0700) and return
    it; if another process wrote one first, theirs is returned and ours is dropped."""
    path = key_file(key_dir, vault_id)
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = key_dir / f".{vault_id}.{secrets.token_hex(8)}.new"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_urlsafe(32).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        # link() is exclusive like O_EXCL, and the file is whole by the time it has its name,
        # so a concurrent reader never sees a half-written key.
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
        else:
            _fsync_folder(key_dir)  # the key must outlive a crash, or the vault is lost
    finally:
        temp.unlink(missing_ok=True)
    password = read_vault_password(key_dir, vault_id)
    assert password is not None  # it exists now, ours or the winner's
    return password


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_vault(
    settings: VaultLocation, vault_id: str, *, create: bool = True, recorded_encrypted: bool = False
) -> Vault:
    """Open (or, with ``create``, start) the vault ``vault_id`` as the settings say.

    ``recorded_encrypted``: the database says this vault is encrypted, so without its key file
    it fails (``VaultKeyMissing``) even if its config is missing or plaintext.
    """
    storage = vault_storage(settings, vault_id)
    key_dir = settings.resolved_vault_key_dir
    password = read_vault_password(key_dir, vault_id)
    if password is None:
        stored = read_config(storage)
        if recorded_encrypted or (stored is not None and stored[0].encryption is not None):
            raise VaultKeyMissing(
                f"key file {key_file(key_dir, vault_id)} missing: restore it from your backup "
                "of the key folder"
            )
        if stored is None and create:
            password = create_vault_key(key_dir, vault_id)
            # 256 random bits need no key stretching: the floor's scrypt is enough.
            return Vault(storage, password=password, kdf=KDF_FLOOR)
    return Vault(storage, password=password, create=create)
