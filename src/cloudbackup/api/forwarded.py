"""Behind a TLS proxy: the scheme and host the client used, from the proxy's headers.

Only a peer listed in ``CLOUDBACKUP_TRUSTED_PROXIES`` (addresses or networks, comma-separated,
e.g. ``127.0.0.1,10.0.0.0/8``) is believed: its ``X-Forwarded-Proto`` becomes the request's
scheme and its ``X-Forwarded-Host`` the ``Host``, so every ``href`` and ``Location`` names the
address the client reached. Anyone else's forwarding headers are ignored (a client could
otherwise make the API print links to a host of its choosing). Where a proxy chain appends, the
first value is the one the client sent to the outermost proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """``CLOUDBACKUP_TRUSTED_PROXIES`` as networks; raises ``ValueError`` naming a bad entry."""
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ValueError(
                f"CLOUDBACKUP_TRUSTED_PROXIES: {part!r} is not an IP address or network"
            ) from exc
    return tuple(networks)


def _first(value: bytes) -> str:
    return value.decode("latin-1").split(",", 1)[0].strip()


class ForwardedHeaders:
    """ASGI middleware applying a trusted proxy's ``X-Forwarded-Proto``/``-Host``."""

    def __init__(self, app: ASGIApp, networks: Iterable[Network]) -> None:
        self.app = app
        self.networks = tuple(networks)

    def _trusted(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in (ScopeType.HTTP, ScopeType.WEBSOCKET) and self._trusted(scope):
            scope = self._rewritten(scope)
        await self.app(scope, receive, send)

    def _rewritten(self, scope: Scope) -> Any:
        proto = host = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-proto":
                proto = _first(value).lower()
            elif name == b"x-forwarded-host":
                host = _first(value)
        if proto is None and host is None:
            return scope
        changed: dict[str, Any] = dict(scope)
        if proto in ("http", "https"):
            secure = proto == "https"
            websocket = scope["type"] == ScopeType.WEBSOCKET
            changed["scheme"] = ("wss" if secure else "ws") if websocket else proto
        if host:
            headers = [(n, v) for n, v in scope["headers"] if n != b"host"]
            changed["headers"] = [*headers, (b"host", host.encode("latin-1"))]
        return changed
