"""S1/S2: project-wide summary settings (spec §13, OQ-36)."""

from __future__ import annotations

import pytest

from factories.api import OTHER_PROJECT, PROJECT, headers, token

URL = f"/v2/{PROJECT}/settings/summaries"
DEFAULTS = {"daily": False, "weekly": False, "notifications": []}
RECIPIENT = {"type": "email", "destination": "ops@example.com"}


def read(client, secret, url=URL):
    response = client.get(url, headers=headers(secret))
    assert response.status_code == 200, response.text
    return response.json()


def test_defaults_before_any_put_then_the_put_document(client, db):
    secret = token(db)
    assert read(client, secret) == DEFAULTS

    body = {"daily": True, "weekly": False, "notifications": [RECIPIENT]}
    response = client.put(URL, json=body, headers=headers(secret))

    assert response.status_code == 204
    assert response.content == b""
    assert read(client, secret) == body
    assert read(client, token(db, OTHER_PROJECT), f"/v2/{OTHER_PROJECT}/settings/summaries") == (
        DEFAULTS
    )


def test_a_put_replaces_everything_and_missing_flags_are_false(client, db):
    secret = token(db)
    client.put(
        URL,
        json={"daily": True, "weekly": True, "notifications": [RECIPIENT]},
        headers=headers(secret),
    )
    assert client.put(URL, json={"notifications": []}, headers=headers(secret)).status_code == 204
    assert read(client, secret) == DEFAULTS


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"daily": True}, "notifications is required."),
        ({"notifications": [{"type": "sms", "destination": "123"}]}, "must be 'email'"),
        ({"notifications": [{"type": "email", "destination": "nope"}]}, "not an e-mail address"),
        ({"notifications": [RECIPIENT, RECIPIENT]}, "listed more than once"),
        ({"notifications": [RECIPIENT] * 101}, "at most 100"),
        ({"notifications": [], "monthly": True}, "unknown field"),
        ({"notifications": [{"type": "email"}]}, "missing required field"),
        ({"notifications": [], "daily": "yes"}, "Expected `bool`"),
        ({"notifications": {}}, "Expected `array`"),
    ],
)
def test_bad_settings_are_400_and_change_nothing(client, db, body, expected):
    secret = token(db)
    client.put(URL, json={"daily": True, "notifications": [RECIPIENT]}, headers=headers(secret))

    response = client.put(URL, json=body, headers=headers(secret))

    assert response.status_code == 400, response.text
    assert any(expected in problem for problem in response.json()["errors"]), response.json()
    assert read(client, secret) == {"daily": True, "weekly": False, "notifications": [RECIPIENT]}


def test_content_type_and_roles(client, db):
    secret = token(db)
    response = client.put(
        URL,
        content=b'{"notifications": []}',
        headers={"X-Auth-Token": secret, "Content-Type": "text/plain"},
    )
    assert response.status_code == 400
    assert response.json()["message"] == "Content-Type must be application/json."
    observer = token(db, role="observer")
    assert client.put(URL, json={"notifications": []}, headers=headers(observer)).status_code == 403
    assert read(client, observer) == DEFAULTS
    assert (
        client.put(
            URL, json={"notifications": []}, headers=headers(token(db, role="creator"))
        ).status_code
        == 204
    )
