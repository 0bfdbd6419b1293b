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


def test_links_name_the_proxy_address_when_served_behind_a_trusted_proxy(tmp_path):
    """`cloudbackup web` itself, asked through 127.0.0.1 as the trusted proxy."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    from cloudbackup.store import migrate
    from cloudbackup.store.db import Database
    from factories.api import token

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db_url = f"sqlite:///{tmp_path / 'cb.db'}"
    migrate.upgrade(db_url)
    db = Database(db_url)
    secret = token(db)
    db.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDBACKUP_")}
    env.update(
        CLOUDBACKUP_DATA_DIR=str(tmp_path),
        CLOUDBACKUP_DATABASE_URL=db_url,
        CLOUDBACKUP_BROKER_URL="redis://127.0.0.1:1/0",  # never reached: no backup is started
        CLOUDBACKUP_TRUSTED_PROXIES="127.0.0.1",
    )
    web = subprocess.Popen(
        [sys.executable, "-m", "cloudbackup.cli", "web", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/", timeout=1)
                break
            except httpx.HTTPError:
                assert web.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        forwarded = {
            "X-Auth-Token": secret,
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "backup.example.com",
        }
        from factories.api import agent_body

        created = httpx.post(f"{base}/v2/110011/agents", json=agent_body(), headers=forwarded)
        assert created.status_code == 201, created.text
        assert created.headers["location"].startswith("https://backup.example.com/v2/110011/")
        listed = httpx.get(f"{base}/v2/110011/agents", headers=forwarded).json()
        hrefs = [link["href"] for agent in listed["agents"] for link in agent["links"]]
        assert hrefs and all(h.startswith("https://backup.example.com/") for h in hrefs)
    finally:
        web.terminate()
        web.wait(timeout=20)
