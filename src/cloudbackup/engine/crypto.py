"""Encryption at rest: a random master key, wrapped by a key derived from the password.

Like restic: the password never encrypts data directly. scrypt(password, salt) gives a key
encryption key that wraps (AES-256-GCM) a random 64-byte master key: 32 bytes encrypt every object
and blob (AES-256-GCM, random 96-bit nonce each), 32 bytes key the BLAKE3 chunk ids so ids reveal
nothing about contents. Changing the password re-wraps the master key and touches no data.

Format 3 binds every sealed object to what it is: the associated data of an object is its name
(``index/…``, ``snapshots/3.manifest``), of a chunk its id, so bytes copied onto another name fail
to open. Format 2 (vaults written before) sealed without associated data; its sealer is kept so
those vaults stay readable (docs/engine.md, "Vault formats").
"""

from __future__ import annotations

import hmac
import os
from typing import Final, Protocol

import blake3
import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
KEY_SIZE: Final = 32
#: Bytes an encrypted blob takes on top of its plaintext.
OVERHEAD: Final = NONCE_SIZE + TAG_SIZE
#: The associated data of a format-2 wrapped master key (format 3 adds its format to it).
LEGACY_WRAP_CONTEXT: Final = b"cloudbackup-master-key"


class DecryptError(Exception):
    """A ciphertext failed authentication: wrong key, damaged bytes, or another object's bytes."""


class KdfParams(msgspec.Struct, frozen=True):
    """scrypt cost parameters; the defaults take ~0.1 s and 32 MiB, restic-like."""

    n: int = 2**15
    r: int = 8
    p: int = 1


#: The cheapest scrypt a format-3 config may ask for (scrypt's "interactive" N=2^14, r=8: 16 MiB).
#: Below it an altered config could make a later password change wrap the key under a weak KDF.
KDF_FLOOR: Final = KdfParams(n=2**14, r=8, p=1)
#: The costliest one any config may ask for (1 GiB, 16 lanes): a config is untrusted until its MAC
#: is checked, and the check needs the KDF first, so this bounds what a forged config can cost.
_MAX_MEMORY: Final = 2**30
_MAX_P: Final = 16


def kdf_problem(params: KdfParams, *, floor: KdfParams | None) -> str | None:
    """Why a config's scrypt parameters are refused (None: acceptable)."""
    n, r, p = params.n, params.r, params.p
    if n < 2 or n & (n - 1) or r < 1 or p < 1:
        return f"scrypt parameters n={n} r={r} p={p} are not valid"
    if 128 * r * n > _MAX_MEMORY or p > _MAX_P:
        return f"scrypt parameters n={n} r={r} p={p} exceed the limit of 1 GiB and p={_MAX_P}"
    if floor is not None and (n * r < floor.n * floor.r or p < floor.p):
        return (
            f"scrypt parameters n={n} r={r} p={p} are below the floor"
            f" n={floor.n} r={floor.r} p={floor.p}"
        )
    return None


def derive_key(password: str, salt: bytes, params: KdfParams) -> bytes:
    """The key-encryption key of a password."""
    kdf = Scrypt(salt=salt, length=KEY_SIZE, n=params.n, r=params.r, p=params.p)
    return kdf.derive(password.encode("utf-8"))


def subkey(kek: bytes, purpose: str) -> bytes:
    """A key for one purpose (wrapping, the config MAC) from the key-encryption key."""
    return blake3.blake3(kek, derive_key_context=f"cloudbackup v3 {purpose}").digest()


def config_mac(mac_key: bytes, body: bytes) -> bytes:
    """HMAC-SHA256 of a config's encoded bytes."""
    return hmac.digest(mac_key, body, "sha256")


def mac_matches(mac_key: bytes, body: bytes, mac: bytes) -> bool:
    return hmac.compare_digest(config_mac(mac_key, body), mac)


class Sealer(Protocol):
    """Turns plaintext into stored bytes and back; ``open`` raises ``DecryptError``.

    ``ad`` says what the bytes are (an object's name, a chunk's id): a sealer that binds names
    opens bytes only under the ``ad`` they were sealed with.
    """

    encrypted: bool

    def seal(self, data: bytes, ad: bytes) -> bytes: ...

    def open(self, data: bytes, ad: bytes) -> bytes: ...

    def chunk_id(self, data: bytes | memoryview) -> bytes: ...


class PlainSealer:
    """No encryption (format-2 vaults created without a password only): stored bytes are the
    plaintext; chunk ids are plain BLAKE3."""

    encrypted = False

    def seal(self, data: bytes, ad: bytes) -> bytes:
        return data

    def open(self, data: bytes, ad: bytes) -> bytes:
        return data

    def chunk_id(self, data: bytes | memoryview) -> bytes:
        return blake3.blake3(data).digest()


class AesSealer:
    """AES-256-GCM with a random nonce stored in front of each ciphertext.

    ``bind_names`` (format 3) makes ``ad`` the associated data; without it (format 2) ``ad`` is
    ignored, as that format sealed everything without associated data.
    """

    encrypted = True

    def __init__(self, master_key: bytes, *, bind_names: bool = True) -> None:
        if len(master_key) != 2 * KEY_SIZE:
            raise ValueError("master key must be 64 bytes")
        self._aead = AESGCM(master_key[:KEY_SIZE])
        self._id_key = master_key[KEY_SIZE:]
        self.bind_names = bind_names

    def seal(self, data: bytes, ad: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, data, ad if self.bind_names else None)

    def open(self, data: bytes, ad: bytes) -> bytes:
        if len(data) < OVERHEAD:
            raise DecryptError("ciphertext too short")
        try:
            return self._aead.decrypt(
                data[:NONCE_SIZE], data[NONCE_SIZE:], ad if self.bind_names else None
            )
        except InvalidTag as exc:
            raise DecryptError("authentication failed") from exc

    def chunk_id(self, data: bytes | memoryview) -> bytes:
        return blake3.blake3(data, key=self._id_key).digest()


def wrap_master_key(master_key: bytes, kek: bytes, context: bytes = LEGACY_WRAP_CONTEXT) -> bytes:
    """Encrypt the master key with a key-encryption key; ``context`` is the associated data."""
    nonce = os.urandom(NONCE_SIZE)
    return nonce + AESGCM(kek).encrypt(nonce, master_key, context)


def unwrap_master_key(wrapped: bytes, kek: bytes, context: bytes = LEGACY_WRAP_CONTEXT) -> bytes:
    """Decrypt the master key; ``DecryptError`` when the password (so the kek) is wrong."""
    try:
        return AESGCM(kek).decrypt(wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:], context)
    except (InvalidTag, ValueError) as exc:
        raise DecryptError("wrong password") from exc


def new_master_key() -> bytes:
    return os.urandom(2 * KEY_SIZE)
