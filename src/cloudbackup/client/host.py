"""What `cloudbackup agents register` says about this machine in an A1 body (spec §8 A1).

The machine id comes from ``/etc/machine-id`` (else a UUID derived from the host name), the OS from
``/etc/os-release``; the fingerprint is a hash of both, so it stays the same on every call. A real
RSA key pair is made: the public half goes to the API, the private half stays with the user.
"""

from __future__ import annotations

import hashlib
import platform
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

AGENT_VERSION = "cloudbackup-cli-1"


def machine_id() -> str:
    try:
        raw = Path("/etc/machine-id").read_text(encoding="ascii").strip()
        return str(uuid.UUID(raw))
    except (OSError, ValueError):
        return str(uuid.uuid5(uuid.NAMESPACE_DNS, socket.gethostname()))


def os_release() -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key] = value.strip().strip('"')
    except OSError:
        pass
    return {
        "name": values.get("NAME") or platform.system() or "unknown",
        "version": values.get("VERSION_ID") or platform.release() or "unknown",
        "architecture": "64-bit" if sys.maxsize > 2**32 else "32-bit",
    }


def new_key(bits: int = 2048) -> tuple[dict[str, Any], bytes]:
    """A new RSA key of ``bits``: the A1 ``rsa_public_key`` and the private key as PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    numbers = key.public_key().public_numbers()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The spec writes the modulus in hex and the exponent as its hex digits (65537 -> 10001).
    public = {"modulus": format(numbers.n, "x"), "exponent": int(format(numbers.e, "x"))}
    return public, pem


def registration(
    name: str, *, flavor: str, region: str | None, addresses: list[str], public_key: dict[str, Any]
) -> dict[str, Any]:
    """An A1 body describing this machine."""
    machine = machine_id()
    return {
        "name": name,
        "version": AGENT_VERSION,
        "host": {
            "flavor": flavor,
            "region": region,
            "machine": {"id": machine},
            "os": os_release(),
            "fingerprint": hashlib.sha256(f"{machine}:{socket.gethostname()}".encode()).hexdigest(),
            "addresses": [
                {"version": 6 if ":" in address else 4, "addr": address} for address in addresses
            ],
        },
        "rsa_public_key": public_key,
    }
