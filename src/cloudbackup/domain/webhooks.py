"""Webhooks (issue 14, part 1): signing per the Standard Webhooks convention and the SSRF rule.

A webhook's secret is ``whsec_`` + base64 of 32 random bytes; each POST carries ``webhook-id``
(the event id), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature: v1,<base64
HMAC-SHA256 over "{id}.{timestamp}.{body}">`` keyed with the decoded part after ``whsec_``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from cloudbackup.domain.errors import InvalidInput

SECRET_PREFIX = "whsec_"
SCHEMES = ("http", "https")

Resolver = Callable[[str], list[str]]


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value of one POST."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }


def resolve(host: str) -> list[str]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})


def check_url(url: str, *, allow_private: bool, resolver: Resolver = resolve) -> None:
    """Refuse (InvalidInput) a URL that is not http(s), or whose host is or resolves to a
    loopback, private, link-local, multicast, reserved or unspecified address (SSRF), unless
    ``allow_private`` (CLOUDBACKUP_WEBHOOK_ALLOW_PRIVATE). Checked at creation and before every
    delivery, since DNS may change."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise InvalidInput("Validation failed.", ["url must be an http:// or https:// URL."])
    if allow_private:
        return
    try:
        addresses = resolver(parts.hostname)
    except (OSError, UnicodeError) as exc:
        raise InvalidInput(
            "Validation failed.", [f"url's host {parts.hostname!r} does not resolve: {exc}"]
        ) from exc
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if not ip.is_global or ip.is_multicast or ip.is_unspecified:
            raise InvalidInput(
                "Validation failed.",
                [
                    f"url's host {parts.hostname!r} is or resolves to {ip}, a loopback, private, "
                    "link-local, multicast or unspecified address; webhooks go to public "
                    "addresses only (CLOUDBACKUP_WEBHOOK_ALLOW_PRIVATE=true allows these)."
                ],
            )
