"""The agent's state folder: who it is (``agent.json``), its RSA private key, its vault
password and the last channel marker it handled. The folder is mode 0700, every file 0600:
the password and keys never leave this host (the server keeps only hashes and the public key).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

import msgspec

STATE_FILE = "agent.json"
PRIVATE_KEY_FILE = "private_key.pem"
VAULT_PASSWORD_FILE = "vault.key"
MARKER_FILE = "channel.marker"


class AgentIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """What A1 answered and what A9 needs again."""

    url: str
    project_id: str
    agent_id: str
    password: str
    name: str
    version: str
    fingerprint: str
    os: dict[str, str]
    addresses: list[dict[str, object]]


class StateError(Exception):
    """The state folder is missing, unreadable or open to other users."""


def make_private_dir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` whole with mode 0600 (a temp file renamed over it)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def read_private(path: Path) -> bytes:
    """Read a state file, refusing one other users could read or change."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode) or mode & 0o077:
            raise StateError(f"{path} must be a regular file of mode 0600")
        return f.read()


class StateDir:
    """One agent's state folder."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)

    def save_identity(self, identity: AgentIdentity, private_key_pem: bytes) -> None:
        make_private_dir(self.folder)
        write_private(self.folder / PRIVATE_KEY_FILE, private_key_pem)
        write_private(self.folder / STATE_FILE, msgspec.json.encode(identity))

    def has_identity(self) -> bool:
        return (self.folder / STATE_FILE).exists()

    def identity(self) -> AgentIdentity:
        if not self.has_identity():
            raise StateError(f"no agent in {self.folder}: run `cloudbackup agent register` first")
        if os.stat(self.folder).st_mode & 0o077:
            raise StateError(f"{self.folder} must be mode 0700 (it holds the agent's keys)")
        return msgspec.json.decode(read_private(self.folder / STATE_FILE), type=AgentIdentity)

    def vault_password(self) -> str:
        """The vault's password, made here on first use: the server never sees it."""
        path = self.folder / VAULT_PASSWORD_FILE
        try:
            return read_private(path).decode().strip()
        except FileNotFoundError:
            password = secrets.token_urlsafe(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(password.encode())
                out.flush()
                os.fsync(out.fileno())
            return password

    def private_key(self) -> bytes:
        """The agent's RSA private key (PEM), which reads the passwords sent to it."""
        return read_private(self.folder / PRIVATE_KEY_FILE)

    def save_vault_password(self, password: str) -> None:
        """Keep the vault's new password (after V2 rewrapped the vault key with it)."""
        write_private(self.folder / VAULT_PASSWORD_FILE, password.encode())

    def marker(self) -> str | None:
        try:
            return read_private(self.folder / MARKER_FILE).decode().strip() or None
        except FileNotFoundError:
            return None

    def save_marker(self, marker: str) -> None:
        write_private(self.folder / MARKER_FILE, marker.encode())
