"""Webhook signatures (Standard Webhooks, as in the field notes) and the SSRF rule."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from cloudbackup.domain.errors import InvalidInput
from cloudbackup.domain.webhooks import check_url, new_secret, signature, signed_headers


def test_signature_matches_the_standard_webhooks_recipe() -> None:
    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    body = b'{"id":"7","event":"backup_completed"}'
    expected = base64.b64encode(
        hmac.new(key, b"7.1700000000." + body, hashlib.sha256).digest()
    ).decode()
    assert signature(secret, "7", 1700000000, body) == f"v1,{expected}"
    headers = signed_headers(secret, "7", 1700000000, body)
    assert headers["webhook-id"] == "7"
    assert headers["webhook-timestamp"] == "1700000000"
    assert headers["webhook-signature"] == f"v1,{expected}"


def test_signature_changes_with_body_and_secret() -> None:
    secret = new_secret()
    assert signature(secret, "1", 1, b"a") != signature(secret, "1", 1, b"b")
    assert signature(secret, "1", 1, b"a") != signature(new_secret(), "1", 1, b"a")


def test_secret_is_whsec_and_32_random_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://172.16.5.5/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
    ],
)
def test_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_url(url, allow_private=False)
    assert "CLOUDBACKUP_WEBHOOK_ALLOW_PRIVATE" in caught.value.errors[0]


def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    with pytest.raises(InvalidInput):
        check_url(
            "https://hooks.example.com/", allow_private=False, resolver=lambda _: ["10.0.0.9"]
        )


def test_public_addresses_pass_and_private_ones_when_allowed() -> None:
    check_url(
        "https://hooks.example.com/x", allow_private=False, resolver=lambda _: ["93.184.216.34"]
    )
    check_url("http://127.0.0.1:9/", allow_private=True)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "file:///etc/passwd", "not a url", "http://"]
)
def test_only_http_and_https_urls(url: str) -> None:
    with pytest.raises(InvalidInput):
        check_url(url, allow_private=True)
