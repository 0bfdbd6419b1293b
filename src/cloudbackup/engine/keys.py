"""The vault's config object and its keys: the master key, wrapped under the password.

``config`` holds the format, the chunker bounds, the compression level and the master key wrapped
by a key derived from the password (the password itself is never stored). Opening a vault reads
the config, or creates it on first use, and yields the master key that seals every other object.

Format 3 (every vault created now) is always encrypted and its config is authenticated: the
stored object is the encoded :class:`VaultConfig` and an HMAC-SHA256 over exactly those bytes,
keyed by a subkey of the password's key-encryption key. The scrypt parameters are inside what is
MACed; since the verifier needs them to derive the MAC key, it first refuses parameters outside
[``KDF_FLOOR``, the ceiling], then derives, unwraps and checks the MAC before trusting anything.
Format-2 configs (no MAC, possibly unencrypted) are still opened as they are: see docs/engine.md.
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
    KDF_FLOOR,
    AesSealer,
    DecryptError,
    KdfParams,
    PlainSealer,
    Sealer,
    config_mac,
    derive_key,
    kdf_problem,
    mac_matches,
    new_master_key,
    subkey,
    unwrap_master_key,
    wrap_master_key,
)
from cloudbackup.engine.errors import NotEncrypted, PasswordRequired, VaultError, WrongPassword
from cloudbackup.engine.storage import Storage

#: The format every new vault gets.
VAULT_FORMAT: Final = 3
#: The format before names were bound and the config MACed; such vaults keep working as they are.
LEGACY_FORMAT: Final = 2
CONFIG: Final = "config"
#: Associated data of a format-3 wrapped key: a format-2 config cannot carry it (no downgrade).
_WRAP_CONTEXT: Final = b"cloudbackup v3 master key"
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
    encryption: EncryptionConfig | None = None  # None: a format-2 vault made without a password


class AuthenticatedConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The stored form of a format-3 config: its encoded bytes and their MAC."""

    format: int = VAULT_FORMAT
    config: bytes
    mac: bytes


class _Head(msgspec.Struct):
    """The one field every stored config has, whatever its format."""

    format: int


class NewVault(msgspec.Struct, frozen=True, kw_only=True):
    """How to create a vault whose config does not exist yet."""

    kdf: KdfParams
    compression_level: int
    chunker: ChunkerParams | None


def read_config(storage: Storage) -> tuple[VaultConfig, AuthenticatedConfig | None] | None:
    """The stored config, NOT yet authenticated (None: there is none), and, for format 3, the
    bytes its MAC covers. Only :func:`open_config` decides whether to trust it."""
    try:
        raw = storage.get(CONFIG)
    except FileNotFoundError:
        return None
    try:
        head = msgspec.msgpack.decode(raw, type=_Head)
        if head.format == LEGACY_FORMAT:
            return msgspec.msgpack.decode(raw, type=VaultConfig), None
        if head.format != VAULT_FORMAT:
            raise VaultError(f"unsupported vault format {head.format}")
        stored = msgspec.msgpack.decode(raw, type=AuthenticatedConfig)
        config = msgspec.msgpack.decode(stored.config, type=VaultConfig)
    except msgspec.DecodeError as exc:
        raise VaultError(f"the vault config is not readable: {exc}") from exc
    if config.format != VAULT_FORMAT or config.encryption is None:
        raise VaultError("the vault config failed authentication: it was altered")
    return config, stored


def open_config(
    storage: Storage, password: str | None, create: NewVault | None
) -> tuple[VaultConfig, bytes | None]:
    """The vault's config and master key (None: a format-2 plaintext vault). ``create`` None:
    the vault must exist; otherwise a missing config is created, encrypted under ``password``."""
    stored = read_config(storage)
    if stored is None:
        if create is None:
            raise VaultError(f"no vault at {storage.describe()}")
        created = _create_config(storage, password, create)
        # None: another process created it first; use theirs.
        return created or open_config(storage, password, None)
    config, authenticated = stored
    if authenticated is None:
        return config, _open_legacy(config, password)
    if not password:
        raise PasswordRequired("this vault is encrypted: a password is required")
    return config, _open_authenticated(config, authenticated, password)


def _open_legacy(config: VaultConfig, password: str | None) -> bytes | None:
    """The master key of a format-2 vault (None: it is plaintext)."""
    if config.encryption is None:
        if password is not None:
            # Also what stops a plaintext config planted over an encrypted vault's: its key
            # exists, so the caller passes a password, and that is refused here.
            raise NotEncrypted("this vault is not encrypted; it takes no password")
        return None
    if not password:
        raise PasswordRequired("this vault is encrypted: a password is required")
    enc = config.encryption
    _check_ciphers(enc)
    _check_cost(enc.kdf_params, "the vault config is refused", floor=None)  # format 2 had none
    kek = derive_key(password, enc.salt, enc.kdf_params)
    try:
        return unwrap_master_key(enc.wrapped_key, kek)
    except DecryptError:
        raise WrongPassword("wrong password for this vault") from None


def _open_authenticated(config: VaultConfig, stored: AuthenticatedConfig, password: str) -> bytes:
    """Check a format-3 config against ``password``; its master key once the MAC holds."""
    enc = config.encryption
    assert enc is not None  # read_config refuses a format-3 config without it
    _check_ciphers(enc)
    _check_cost(enc.kdf_params, "the vault config is refused")
    # Altered salt or parameters derive another key, so they end as a wrong password too.
    master, kek = _unwrap(
        enc, password, "wrong password for this vault (or its config was altered)"
    )
    if not mac_matches(subkey(kek, "config mac"), stored.config, stored.mac):
        raise VaultError("the vault config failed authentication: it was altered")
    return master


def _check_cost(params: KdfParams, refusal: str, *, floor: KdfParams | None = KDF_FLOOR) -> None:
    """Refuse (``VaultError``: ``refusal`` and why) a scrypt cost outside the bounds."""
    problem = kdf_problem(params, floor=floor)
    if problem:
        raise VaultError(f"{refusal}: {problem}")


def _unwrap(enc: EncryptionConfig, password: str, wrong: str) -> tuple[bytes, bytes]:
    """The master key of a format-3 config and the key that wrapped it (derived from
    ``password``); ``WrongPassword(wrong)`` when it does not unwrap."""
    kek = derive_key(password, enc.salt, enc.kdf_params)
    try:
        master = unwrap_master_key(enc.wrapped_key, subkey(kek, "key wrap"), _WRAP_CONTEXT)
    except DecryptError:
        raise WrongPassword(wrong) from None
    return master, kek


def _create_config(
    storage: Storage, password: str | None, new: NewVault
) -> tuple[VaultConfig, bytes] | None:
    """Write a new (always encrypted) config; None when another process wrote one first."""
    if not password:
        raise PasswordRequired("a new vault is always encrypted: a password is needed to create it")
    _check_cost(new.kdf, "cannot create the vault")
    if next(iter(storage.list("snapshots/")), None) is not None:
        raise VaultError(
            f"{storage.describe()} holds a vault of an older format; back up into a new vault"
        )
    master = new_master_key()
    encryption, kek = _wrap(master, password, new.kdf)
    config = VaultConfig(
        id=secrets.token_hex(16),
        created_ns=time.time_ns(),
        chunker=new.chunker or ChunkerParams(),
        compression_level=new.compression_level,
        encryption=encryption,
    )
    if not storage.create(CONFIG, _authenticated(config, kek)):
        return None
    return config, master


def rewrapped(
    config: VaultConfig, old: str, new: str, *, kdf: KdfParams | None = None
) -> tuple[VaultConfig, bytes]:
    """Change the password: the config with the master key wrapped under ``new`` instead of
    ``old``, and the bytes to store as ``config`` (format 3: authenticated under ``new``). No
    data object changes; ``WrongPassword`` if ``old`` is not the password. ``kdf``: the scrypt
    cost for ``new`` (None: the vault's own), e.g. the full default when a person's password
    replaces a random key."""
    enc = config.encryption
    if enc is None:
        raise NotEncrypted("this vault is not encrypted; it has no password to change")
    if not new:
        raise VaultError("the new password may not be empty")
    if config.format == LEGACY_FORMAT:
        master = _open_legacy(config, old)
        assert master is not None
        salt = os.urandom(16)
        cost = kdf or enc.kdf_params
        wrapped = wrap_master_key(master, derive_key(new, salt, cost))
        legacy = msgspec.structs.replace(
            config,
            encryption=msgspec.structs.replace(
                enc, kdf_params=cost, salt=salt, wrapped_key=wrapped
            ),
        )
        return legacy, _encoder.encode(legacy)
    cost = kdf or enc.kdf_params
    _check_cost(cost, "cannot change the password")
    master, _kek = _unwrap(enc, old, "wrong password for this vault")
    encryption, new_kek = _wrap(master, new, cost)
    changed = msgspec.structs.replace(config, encryption=encryption)
    return changed, _authenticated(changed, new_kek)


def sealer_of(config: VaultConfig, master: bytes | None) -> Sealer:
    """How the vault's objects are sealed: format 3 binds each to its name."""
    if master is None:
        return PlainSealer()
    return AesSealer(master, bind_names=config.format != LEGACY_FORMAT)


def chunker_seed(master: bytes | None) -> int:
    """A secret gear seed per encrypted vault: chunk boundaries then reveal nothing either."""
    if master is None:
        return 0
    digest = blake3.blake3(master, derive_key_context="cloudbackup chunker seed").digest()
    # pyfastcdc shifts the seed left by one within 64 bits: keep it below 2**62.
    return int.from_bytes(digest[:8], "little") & (2**62 - 1)


def _wrap(master: bytes, password: str, kdf: KdfParams) -> tuple[EncryptionConfig, bytes]:
    """A fresh salt's format-3 encryption section for ``password``, and the kek it derives."""
    salt = os.urandom(16)
    kek = derive_key(password, salt, kdf)
    wrapped = wrap_master_key(master, subkey(kek, "key wrap"), _WRAP_CONTEXT)
    return EncryptionConfig(kdf_params=kdf, salt=salt, wrapped_key=wrapped), kek


def _authenticated(config: VaultConfig, kek: bytes) -> bytes:
    """The stored bytes of a format-3 config: its encoding and the MAC over it."""
    body = _encoder.encode(config)
    mac = config_mac(subkey(kek, "config mac"), body)
    return _encoder.encode(AuthenticatedConfig(config=body, mac=mac))


def _check_ciphers(enc: EncryptionConfig) -> None:
    if enc.kdf != "scrypt" or enc.cipher != "aes-256-gcm":
        raise VaultError(f"unsupported vault encryption {enc.cipher} with {enc.kdf}")
