"""Vault passwords in transit (docs/decisions.md, "Vault passwords for remote agents"): the
``*_encrypted_password_hex`` of V2, V5, R1 and B5 is the UTF-8 password encrypted with the
agent's RSA public key, RSA-OAEP with SHA-256 and MGF1-SHA-256, no label, hex-encoded."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


class PasswordUnreadable(Exception):
    """The hex is not a password encrypted with this agent's key."""


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def public_key_of(rsa_public_key: dict[str, Any]) -> rsa.RSAPublicKey:
    """The key A3 shows as ``rsa_public_key``: the modulus in hex, the exponent's hex digits."""
    modulus = int(str(rsa_public_key["modulus"]), 16)
    exponent = int(str(rsa_public_key["exponent"]), 16)
    return rsa.RSAPublicNumbers(exponent, modulus).public_key()


def encrypt_password(rsa_public_key: dict[str, Any], password: str) -> str:
    """``password`` as the agent with ``rsa_public_key`` reads it."""
    return public_key_of(rsa_public_key).encrypt(password.encode("utf-8"), _oaep()).hex()


def decrypt_password(private_key_pem: bytes, encrypted_hex: str) -> str:
    """The password in ``encrypted_hex``, read with the agent's private key."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PasswordUnreadable("the agent's key is not an RSA key")
    try:
        return key.decrypt(bytes.fromhex("".join(encrypted_hex.split())), _oaep()).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise PasswordUnreadable("not a password encrypted with this agent's key") from exc
