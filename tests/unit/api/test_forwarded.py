"""A trusted proxy's X-Forwarded-Proto/-Host become the request's scheme and host; anyone
else's are ignored."""

from __future__ import annotations

import asyncio

import pytest

from cloudbackup.api.forwarded import ForwardedHeaders, parse_networks


def _seen(peer: str, headers: list[tuple[bytes, bytes]], kind: str = "http") -> dict:
    captured: dict = {}

    async def app(scope, receive, send):
        captured.update(scope)

    scope = {"type": kind, "client": (peer, 5555), "scheme": "http", "headers": headers}
    middleware = ForwardedHeaders(app, parse_networks("127.0.0.1, 10.0.0.0/8, ::1"))
    asyncio.run(middleware(scope, None, None))
    return captured


FORWARDED = [
    (b"host", b"10.0.0.5:8000"),
    (b"x-forwarded-proto", b"https, http"),
    (b"x-forwarded-host", b"backup.example.com"),
]


@pytest.mark.parametrize("peer", ["127.0.0.1", "10.1.2.3", "::1"])
def test_a_trusted_proxy_sets_scheme_and_host(peer):
    scope = _seen(peer, FORWARDED)
    assert scope["scheme"] == "https"
    assert [v for n, v in scope["headers"] if n == b"host"] == [b"backup.example.com"]


def test_websockets_get_the_secure_scheme_too():
    assert _seen("127.0.0.1", FORWARDED, kind="websocket")["scheme"] == "wss"


@pytest.mark.parametrize("peer", ["192.168.1.9", "testclient"])
def test_anyone_else_forwarding_headers_are_ignored(peer):
    scope = _seen(peer, FORWARDED)
    assert scope["scheme"] == "http"
    assert [v for n, v in scope["headers"] if n == b"host"] == [b"10.0.0.5:8000"]


def test_an_odd_proto_is_not_taken():
    scope = _seen("127.0.0.1", [(b"host", b"h"), (b"x-forwarded-proto", b"gopher")])
    assert scope["scheme"] == "http"


def test_a_bad_entry_names_the_setting():
    with pytest.raises(ValueError, match="CLOUDBACKUP_TRUSTED_PROXIES: 'nope'"):
        parse_networks("127.0.0.1,nope")
