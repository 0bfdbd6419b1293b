"""The vault's config object and its keys: the master key, wrapped under the password.

``config`` holds the format, the chunker bounds, the compression level and, for an encrypted
vault, the master key wrapped by a key derived from the password (the password itself is never
stored). Opening a vault reads the config, or creates it on first use, and yields the master key
that seals every other object.
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Final

import blake3
import msgspec

from cloudbackup.engine.chunking import ChunkerParams
from cloudbackup.engine.crypto import (
    AesSealer,
    DecryptError,
    KdfParams,
    PlainSealer,
    Sealer,
    derive_key,
    new_master_key,
    unwrap_master_key,
    wrap_master_key,
)
from cloudbackup.engine.errors import NotEncrypted, PasswordRequired, VaultError, WrongPassword
from cloudbackup.engine.storage import Storage

VAULT_FORMAT: Final = 2
CONFIG: Final = "config"
_encoder = msgspec.msgpack.Encoder()


class EncryptionConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How the master key is wrapped; the password itself is never stored."""

    cipher: str = "aes-256-gcm"
    kdf: str = "scrypt"
    kdf_params: KdfParams
    salt: bytes
    wrapped_key: bytes


class VaultConfig(msgspec.Struct, frozen=True, kw_only=True):
    format: int = VAULT_FORMAT
    id: str
    created_ns: int
    chunker: ChunkerParams
    compression_level: int = 1
    encryption: EncryptionConfig | None = None


class NewVault(msgspec.Struct, frozen=True, kw_only=True):
    """How to create a vault whose config does not exist yet."""

    kdf: KdfParams
    compression_level: int
    chunker: ChunkerParams | None


def open_config(
    storage: Storage, password: str | None, encrypt: bool | None, create: NewVault | None
) -> tuple[VaultConfig, bytes | None]:
    """The vault's config and master key (None: not encrypted). ``encrypt`` None: whether a
    password is given; ``create`` None: the vault must exist."""
    try:
        config = msgspec.msgpack.decode(storage.get(CONFIG), type=VaultConfig)
    except FileNotFoundError:
        config = None
    except msgspec.DecodeError as exc:
        raise VaultError(f"the vault config is not readable: {exc}") from exc
    if config is None:
        if create is None:
            raise VaultError(f"no vault at {storage.describe()}")
        created = _create_config(storage, password, encrypt, create)
        # None: another process created it first; use theirs.
        return created or open_config(storage, password, encrypt, None)
    if config.format != VAULT_FORMAT:
        raise VaultError(f"unsupported vault format {config.format}")
    if config.encryption is None:
        if password is not None or encrypt:
            raise NotEncrypted("this vault is not encrypted; it takes no password")
        return config, None
    if not password:
        raise PasswordRequired("this vault is encrypted: a password is required")
    return config, _unwrap(config.encryption, password)


def _create_config(
    storage: Storage, password: str | None, encrypt: bool | None, new: NewVault
) -> tuple[VaultConfig, bytes | None] | None:
    """Write a new config; None when another process wrote one first."""
    if next(iter(storage.list("snapshots/")), None) is not None:
        raise VaultError(
            f"{storage.describe()} holds a vault of an older format; back up into a new vault"
        )
    wants_encryption = password is not None if encrypt is None else encrypt
    encryption = None
    master = None
    if wants_encryption:
        if not password:
            raise PasswordRequired("a password is needed to create an encrypted vault")
        master = new_master_key()
        salt, wrapped = _wrap(master, password, new.kdf)
        encryption = EncryptionConfig(kdf_params=new.kdf, salt=salt, wrapped_key=wrapped)
    config = VaultConfig(
        id=secrets.token_hex(16),
        created_ns=time.time_ns(),
        chunker=new.chunker or ChunkerParams(),
        compression_level=new.compression_level,
        encryption=encryption,
    )
    if not storage.create(CONFIG, encode_config(config)):
        return None
    return config, master


def rewrapped(config: VaultConfig, old: str, new: str) -> VaultConfig:
    """The config with the master key wrapped under ``new`` instead of ``old``."""
    enc = config.encryption
    if enc is None:
        raise NotEncrypted("this vault is not encrypted; it has no password to change")
    if not new:
        raise VaultError("the new password may not be empty")
    salt, wrapped = _wrap(_unwrap(enc, old), new, enc.kdf_params)
    return msgspec.structs.replace(
        config, encryption=msgspec.structs.replace(enc, salt=salt, wrapped_key=wrapped)
    )


def encode_config(config: VaultConfig) -> bytes:
    return _encoder.encode(config)


def sealer_of(master: bytes | None) -> Sealer:
    return PlainSealer() if master is None else AesSealer(master)


def chunker_seed(master: bytes | None) -> int:
    """A secret gear seed per encrypted vault: chunk boundaries then reveal nothing either."""
    if master is None:
        return 0
    digest = blake3.blake3(master, derive_key_context="cloudbackup chunker seed").digest()
    # pyfastcdc shifts the seed left by one within 64 bits: keep it below 2**62.
    return int.from_bytes(digest[:8], "little") & (2**62 - 1)


def _wrap(master: bytes, password: str, kdf: KdfParams) -> tuple[bytes, bytes]:
    """A fresh salt, and the master key wrapped by the key that salt and ``password`` give."""
    salt = os.urandom(16)
    return salt, wrap_master_key(master, derive_key(password, salt, kdf))


def _unwrap(enc: EncryptionConfig, password: str) -> bytes:
    if enc.kdf != "scrypt" or enc.cipher != "aes-256-gcm":
        raise VaultError(f"unsupported vault encryption {enc.cipher} with {enc.kdf}")
    try:
        return unwrap_master_key(enc.wrapped_key, derive_key(password, enc.salt, enc.kdf_params))
    except DecryptError:
        raise WrongPassword("wrong password for this vault") from None
