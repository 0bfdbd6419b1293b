"""Input limits: oversized bodies (413) and headers (431), deep JSON and bad `limit` (400), all
answered with a JSON body, before anything is recorded."""

from __future__ import annotations

import json

import pytest

from cloudbackup.api.limits import MAX_BODY_BYTES, MAX_HEADER_BYTES, MAX_JSON_DEPTH, json_too_deep
from factories import rows
from factories.api import PROJECT, configuration_body, headers, token


@pytest.fixture
def setup(client, db):
    agent = rows.agent(db)
    return agent, rows.configuration(db, agent), token(db)


def count_backups(client, secret) -> int:
    return len(client.get(f"/v2/{PROJECT}/backups", headers=headers(secret)).json()["backups"])


def test_a_body_over_the_limit_is_413_json(client, setup):
    _, config, secret = setup
    padding = "x" * MAX_BODY_BYTES
    raw = json.dumps({"configuration_id": config.id, "state": "start_requested", "p": padding})
    response = client.post(f"/v2/{PROJECT}/backups", content=raw, headers=headers(secret))
    assert response.status_code == 413
    assert response.json() == {"message": "The request body may be at most 2,097,152 bytes."}
    assert count_backups(client, secret) == 0


def test_a_streamed_body_over_the_limit_is_413_json(client, setup):
    _, _, secret = setup

    def chunks():  # no Content-Length: the size is only known while reading
        yield b'{"configuration_id": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 1):
            yield b"x" * 65536
        yield b'", "state": "start_requested"}'

    response = client.post(f"/v2/{PROJECT}/backups", content=chunks(), headers=headers(secret))
    assert response.status_code == 413
    assert response.json()["message"].startswith("The request body may be at most")
    assert count_backups(client, secret) == 0


def test_headers_over_the_limit_are_431_json(client, setup):
    _, config, secret = setup
    big = {f"X-Filler-{i}": "y" * 1000 for i in range(MAX_HEADER_BYTES // 1000 + 1)}
    response = client.post(
        f"/v2/{PROJECT}/backups",
        json={"configuration_id": config.id, "state": "start_requested"},
        headers={**headers(secret), **big},
    )
    assert response.status_code == 431
    assert response.json() == {"message": "The request headers may be at most 16,384 bytes in all."}
    assert count_backups(client, secret) == 0
    assert client.get(f"/v2/{PROJECT}/backups", headers=headers(secret)).status_code == 200


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 100_000])
@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("backups", "application/json"),
        ("configurations", "application/json"),
        ("agents", "application/json"),
    ],
)
def test_json_nested_too_deep_is_400_not_500(client, setup, depth, path, content_type):
    _, _, secret = setup
    raw = b"[" * depth + b"]" * depth
    response = client.post(
        f"/v2/{PROJECT}/{path}",
        content=raw,
        headers={**headers(secret), "Content-Type": content_type},
    )
    assert response.status_code == 400
    assert response.json() == {
        "message": "Malformed JSON.",
        "errors": [f"The JSON document nests deeper than {MAX_JSON_DEPTH} levels."],
    }


def test_a_deep_json_patch_is_400_and_changes_nothing(client, setup):
    _, config, secret = setup
    url = f"/v2/{PROJECT}/configurations/{config.id}"
    value: object = "Renamed"
    for _ in range(MAX_JSON_DEPTH):
        value = [value]
    response = client.patch(
        url,
        json=[{"op": "replace", "path": "/name", "value": value}],
        headers=headers(secret, **{"Content-Type": "application/json-patch+json"}),
    )
    assert response.status_code == 400
    assert client.get(url, headers=headers(secret)).json()["name"] == config.name


@pytest.mark.parametrize(
    "raw", [b'{"configuration_id": "\xed\xa0\x80", "state": "x"}', b"\xff\xfe[]", b'"\xc3"']
)
def test_json_that_is_not_utf8_is_400_not_500(client, setup, raw):
    _, _, secret = setup
    response = client.post(f"/v2/{PROJECT}/backups", content=raw, headers=headers(secret))
    assert response.status_code == 400
    assert response.json() == {
        "message": "Malformed JSON.",
        "errors": ["The JSON document is not valid UTF-8."],
    }


def test_brackets_inside_strings_do_not_count(client, setup):
    agent, _, secret = setup
    body = configuration_body(agent.id, name="[" * 500 + "{" * 500)
    response = client.post(f"/v2/{PROJECT}/configurations", json=body, headers=headers(secret))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("raw", "too_deep"),
    [
        (b"[" * 33 + b"]" * 33, True),
        (b"[" * 32 + b"]" * 32, False),
        (b'{"a": "' + b"[" * 100 + b'"}', False),  # inside a string
        (b'["\\\\", ' + b"[" * 40 + b"]" * 40 + b"]", True),  # an escaped backslash ends nothing
        (b'["\\"' + b"[" * 40 + b'"]', False),  # an escaped quote does not end the string
        (b"[" + b"[], " * 5000 + b"[]]", False),  # many brackets, shallow
    ],
)
def test_the_depth_scan(raw, too_deep):
    assert json_too_deep(raw) is too_deep


@pytest.mark.parametrize("limit", ["0", "101", "-1", "1.5", "ten", ""])
def test_list_limit_outside_1_to_100_is_400(client, setup, limit):
    _, _, secret = setup
    response = client.get(f"/v2/{PROJECT}/backups?limit={limit}", headers=headers(secret))
    assert response.status_code == 400
    assert response.json()["errors"] == ["limit must be an integer from 1 to 100."]


def test_unknown_query_parameters_are_400(client, setup):
    agent, _, secret = setup
    misspelt = client.get(f"/v2/{PROJECT}/backups?limt=5", headers=headers(secret))
    assert misspelt.status_code == 400
    assert misspelt.json()["errors"] == [
        "Unknown query parameter 'limt'; this operation takes: "
        "configuration_id, limit, marker, restorable, sort_dir."
    ]
    none_taken = client.get(f"/v2/{PROJECT}/agents/{agent.id}?x=1", headers=headers(secret))
    assert none_taken.status_code == 400
    assert none_taken.json()["errors"] == [
        "Unknown query parameter 'x'; this operation takes: none."
    ]
    known = client.get(f"/v2/{PROJECT}/agents?host_machine_id=m", headers=headers(secret))
    assert known.status_code == 200


def test_a_query_parameter_given_twice_is_400(client, setup):
    _, _, secret = setup
    twice = client.get(
        f"/v2/{PROJECT}/agents?host_machine_id=m&host_machine_id=n", headers=headers(secret)
    )
    assert twice.status_code == 400
    assert twice.json()["errors"] == ["Query parameter 'host_machine_id' is given more than once."]
    paged = client.get(f"/v2/{PROJECT}/backups?limit=5&limit=6", headers=headers(secret))
    assert paged.status_code == 400


@pytest.mark.parametrize("value", ["²", "①", "٣", "9" * 30])
def test_numbers_in_queries_are_ascii_digits_of_a_sane_length(client, setup, value):
    _, _, secret = setup
    limit = client.get(f"/v2/{PROJECT}/restores?limit={value}", headers=headers(secret))
    assert limit.status_code == 400
    assert limit.json()["errors"] == ["limit must be an integer from 1 to 100."]
    events = client.get(f"/v2/{PROJECT}/events?marker={value}", headers=headers(secret))
    assert events.status_code == 400
    assert events.json()["errors"] == ["marker must be an event id (digits)."]
