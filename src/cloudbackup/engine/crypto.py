"""Encryption at rest: a random master key, wrapped by a key derived from the password.

Like restic: the password never encrypts data directly. scrypt(password, salt) gives a key
encryption key that wraps (AES-256-GCM) a random 64-byte master key: 32 bytes encrypt every object
and blob (AES-256-GCM, random 96-bit nonce each), 32 bytes key the BLAKE3 chunk ids so ids reveal
nothing about contents. Changing the password re-wraps the master key and touches no data.
"""

from __future__ import annotations

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


class DecryptError(Exception):
    """A ciphertext failed authentication: wrong key, or damaged bytes."""


class KdfParams(msgspec.Struct, frozen=True):
    """scrypt cost parameters; the defaults take ~0.1 s and 32 MiB, restic-like."""

    n: int = 2**15
    r: int = 8
    p: int = 1


def derive_key(password: str, salt: bytes, params: KdfParams) -> bytes:
    """The key-encryption key of a password."""
    kdf = Scrypt(salt=salt, length=KEY_SIZE, n=params.n, r=params.r, p=params.p)
    return kdf.derive(password.encode("utf-8"))


class Sealer(Protocol):
    """Turns plaintext into stored bytes and back; ``open`` raises ``DecryptError``."""

    encrypted: bool

    def seal(self, data: bytes) -> bytes: ...

    def open(self, data: bytes) -> bytes: ...

    def chunk_id(self, data: bytes | memoryview) -> bytes: ...


class PlainSealer:
    """No encryption: stored bytes are the plaintext; chunk ids are plain BLAKE3."""

    encrypted = False

    def seal(self, data: bytes) -> bytes:
        return data

    def open(self, data: bytes) -> bytes:
        return data

    def chunk_id(self, data: bytes | memoryview) -> bytes:
        return blake3.blake3(data).digest()


class AesSealer:
    """AES-256-GCM with a random nonce stored in front of each ciphertext."""

    encrypted = True

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 2 * KEY_SIZE:
            raise ValueError("master key must be 64 bytes")
        self._aead = AESGCM(master_key[:KEY_SIZE])
        self._id_key = master_key[KEY_SIZE:]

    def seal(self, data: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, data, None)

    def open(self, data: bytes) -> bytes:
        if len(data) < OVERHEAD:
            raise DecryptError("ciphertext too short")
        try:
            return self._aead.decrypt(data[:NONCE_SIZE], data[NONCE_SIZE:], None)
        except InvalidTag as exc:
            raise DecryptError("authentication failed") from exc

    def chunk_id(self, data: bytes | memoryview) -> bytes:
        return blake3.blake3(data, key=self._id_key).digest()


def wrap_master_key(master_key: bytes, kek: bytes) -> bytes:
    """Encrypt the master key with a key-encryption key."""
    nonce = os.urandom(NONCE_SIZE)
    return nonce + AESGCM(kek).encrypt(nonce, master_key, b"cloudbackup-master-key")


def unwrap_master_key(wrapped: bytes, kek: bytes) -> bytes:
    """Decrypt the master key; ``DecryptError`` when the password (so the kek) is wrong."""
    try:
        return AESGCM(kek).decrypt(
            wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:], b"cloudbackup-master-key"
        )
    except (InvalidTag, ValueError) as exc:
        raise DecryptError("wrong password") from exc


def new_master_key() -> bytes:
    return os.urandom(2 * KEY_SIZE)
