"""Configurations: CF1-CF5 (spec §7, §16, OQ-19, OQ-21, OQ-34, OQ-36, OQ-37)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from cloudbackup.store.tables import Configuration, Event
from factories import rows
from factories.api import (
    OTHER_PROJECT,
    PROJECT,
    configuration_body,
    create_configuration,
    headers,
    register_agent,
    token,
)

API = f"http://testserver.local/v2/{PROJECT}"
EVERY_OTHER_HOUR = {"recurrence": ["RRULE:FREQ=HOURLY;INTERVAL=2"], "time_zone": "US/Central"}
SCHEDULE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
SPEC_INCLUSIONS = [
    {"type": "folder", "path": "/web/"},
    {"type": "file", "path": "/etc/web/app.conf"},
]
SPEC_EXCLUSIONS = [
    {"type": "folder", "path": "/web/cache/"},
    {"type": "file", "path": "/web/cache.jpg"},
]


@pytest.fixture
def secret(db: Any) -> str:
    return token(db)


@pytest.fixture
def agent(client: Any, secret: str) -> dict[str, Any]:
    return register_agent(client, secret)


def spec_body(agent: str, **overrides: Any) -> dict[str, Any]:
    """The spec's create example (§16): every key, the every-other-hour schedule."""
    body = configuration_body(agent, schedule=EVERY_OTHER_HOUR)
    body.update(inclusions=SPEC_INCLUSIONS, exclusions=SPEC_EXCLUSIONS)
    body.update(overrides)
    return body


def post(client: Any, secret: str, body: Any, project: str = PROJECT) -> Any:
    return client.post(f"/v2/{project}/configurations", json=body, headers=headers(secret))


def get(client: Any, secret: str, config_id: str) -> Any:
    return client.get(f"/v2/{PROJECT}/configurations/{config_id}", headers=headers(secret))


def patch(client: Any, secret: str, config_id: str, ops: Any) -> Any:
    return client.patch(
        f"/v2/{PROJECT}/configurations/{config_id}",
        json=ops,
        headers=headers(secret, **{"Content-Type": "application/json-patch+json"}),
    )


def replace(path: str, value: Any) -> dict[str, Any]:
    return {"op": "replace", "path": path, "value": value}


def config_rows(db: Any) -> list[Configuration]:
    with db.transaction() as session:
        return list(session.execute(sa.select(Configuration)).scalars())


def changed_events(db: Any) -> list[Event]:
    with db.transaction() as session:
        query = sa.select(Event).where(Event.event == "configuration_changed").order_by(Event.id)
        return list(session.execute(query).scalars())


def refs(kind: str, item_id: str) -> dict[str, Any]:
    return {"id": item_id, "links": [{"href": f"{API}/{kind}/{item_id}", "rel": "full"}]}


def expected_detail(config_id: str, agent_id: str, start: str, **changes: Any) -> dict[str, Any]:
    me = f"{API}/configurations/{config_id}"
    detail: dict[str, Any] = {
        "project_id": PROJECT,
        "id": config_id,
        "agent": refs("agents", agent_id),
        "name": "Every Other Hour Configuration",
        "enabled": True,
        "schedule": {"start": start, **EVERY_OTHER_HOUR},
        "retention": {"days": 30},
        "inclusions": SPEC_INCLUSIONS,
        "exclusions": SPEC_EXCLUSIONS,
        "notifications": [
            {
                "type": "email",
                "destination": "email@example.com",
                "on_success": True,
                "on_failure": True,
            }
        ],
        "deleted": False,
        "backups": {"last_completed": None, "next": {"scheduled_time": plus_hours(start, 2)}},
        "links": [
            {"href": me, "rel": "self"},
            {"href": f"{me}/activities", "rel": "activities"},
            {"href": f"{me}/events", "rel": "events"},
        ],
    }
    detail.update(changes)
    return detail


def summary_of(detail: dict[str, Any]) -> dict[str, Any]:
    """The list form (OQ-21): no inclusions/exclusions/notifications/deleted, own link `full`."""
    keys = ("project_id", "id", "agent", "name", "enabled", "schedule", "retention", "backups")
    summary = {key: detail[key] for key in keys}
    summary["links"] = [{**detail["links"][0], "rel": "full"}, *detail["links"][1:]]
    return summary


def plus_hours(stamp: str, hours: int) -> str:
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ") + timedelta(hours=hours)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- CF1 --------------------------------------------------------------------------------------


def test_create_returns_the_detail_form(client, db, secret, agent) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    response = post(client, secret, spec_body(agent["id"]))
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"{API}/configurations/{body['id']}"
    start = body["schedule"]["start"]
    assert SCHEDULE_TIME.fullmatch(start)
    started = datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= started <= datetime.now(UTC)
    expected = expected_detail(body["id"], agent["id"], start)
    assert body == expected
    assert list(body) == list(expected)
    assert list(body["schedule"]) == ["start", "recurrence", "time_zone"]


def test_create_emits_configuration_changed_for_the_agent(client, db, secret, agent) -> None:
    create_configuration(client, secret, agent["id"])
    [event] = changed_events(db)
    assert event.agent_id == agent["id"] and event.project_id == PROJECT
    assert event.members["agent"] == {"id": agent["id"]}  # type: ignore[index]
    assert set(event.members or {}) == {"agent", "request_id"}


def test_without_schedule_there_is_no_next_time(client, secret, agent) -> None:
    body = create_configuration(client, secret, agent["id"])
    assert body["schedule"] is None
    assert body["backups"] == {"last_completed": None, "next": {"scheduled_time": None}}


def test_next_time_follows_the_time_zone(client, secret, agent) -> None:
    schedule = {"recurrence": ["RRULE:FREQ=DAILY;BYHOUR=14;BYMINUTE=0"], "time_zone": "UTC"}
    body = create_configuration(client, secret, agent["id"], schedule=schedule)
    due = datetime.strptime(body["backups"]["next"]["scheduled_time"], "%Y-%m-%dT%H:%M:%SZ")
    now = datetime.now(UTC).replace(tzinfo=None)
    assert (due.hour, due.minute, due.second) == (14, 0, 0)
    assert now < due <= now + timedelta(days=1)


def test_unknown_foreign_or_deleted_agent_is_404(client, db, secret, agent) -> None:
    foreign = rows.agent(db, OTHER_PROJECT)
    client.delete(f"/v2/{PROJECT}/agents/{agent['id']}", headers=headers(secret))
    for agent_id in (str(uuid.uuid4()), foreign.id, agent["id"]):
        response = post(client, secret, spec_body(agent_id))
        assert response.status_code == 404
        assert response.json() == {"message": "Agent not found."}
    assert config_rows(db) == []


@pytest.mark.parametrize(
    "key",
    [
        "agent_id",
        "name",
        "enabled",
        "schedule",
        "retention",
        "inclusions",
        "exclusions",
        "notifications",
    ],
)
def test_every_key_is_required(client, db, secret, agent, key) -> None:
    body = spec_body(agent["id"])
    del body[key]
    response = post(client, secret, body)
    assert response.status_code == 400
    assert response.json() == {"message": "Validation failed.", "errors": [f"{key} is required."]}
    assert config_rows(db) == []


def with_schedule(**schedule: Any) -> dict[str, Any]:
    return {"schedule": schedule}


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"enabled": "true"}, "Expected `bool`, got `str` - at `$.enabled`"),
        ({"name": None}, "Expected `str`, got `null` - at `$.name`"),
        ({"name": ""}, "name must not be empty."),
        ({"agent_id": 5}, "Expected `str`, got `int` - at `$.agent_id`"),
        ({"retention": {"days": "30"}}, "Expected `int`, got `str` - at `$.retention.days`"),
        ({"retention": {"days": 1.5}}, "got `float`"),
        ({"retention": {}}, "missing required field `days`"),
        ({"retention": {"days": -1}}, "retention.days must be an integer from 0"),
        ({"retention": {"days": 30, "hours": 1}}, "unknown field `hours`"),
        ({"deleted": False}, "Object contains unknown field `deleted`"),
        (with_schedule(recurrence=["RRULE:FREQ=HOURLY"]), "missing required field `time_zone`"),
        (with_schedule(time_zone="UTC"), "missing required field `recurrence`"),
        (
            with_schedule(start="2014-08-05T18:22:21Z", **EVERY_OTHER_HOUR),
            "unknown field `start`",
        ),
        (
            with_schedule(recurrence="RRULE:FREQ=HOURLY", time_zone="UTC"),
            "Expected `array`, got `str` - at `$.schedule.recurrence`",
        ),
        (
            with_schedule(recurrence=["RRULE:FREQ=HOURLY;COUNT=2"], time_zone="UTC"),
            "COUNT is not supported",
        ),
        (
            with_schedule(recurrence=["RRULE:FREQ=DAILY;BYHOUR=1,13"], time_zone="UTC"),
            "BYHOUR takes a single value",
        ),
        (
            with_schedule(recurrence=["RRULE:FREQ=HOURLY", "RRULE:FREQ=DAILY"], time_zone="UTC"),
            "exactly one RRULE string, not 2",
        ),
        (
            with_schedule(recurrence=["RRULE:FREQ=HOURLY"], time_zone="Central"),
            "time_zone 'Central' is not a name from the IANA time zone database.",
        ),
        ({"schedule": "hourly"}, "Expected `object | null`, got `str`"),
        ({"inclusions": [{"type": "folder"}]}, "missing required field `path`"),
        ({"inclusions": [{"type": "folder", "path": "web/"}]}, "Inclusion 'web/'"),
        (
            {"exclusions": [{"type": "folder", "path": "/tmp/"}]},
            "Exclusion '/tmp/' does not lie inside any inclusion.",
        ),
        (
            {"exclusions": [{"type": "folder", "path": "/web"}]},
            "Inclusion '/web/' has the same path as exclusion '/web'.",
        ),
        ({"inclusions": []}, "inclusions must name at least one file or folder"),
        (
            {"notifications": [{"type": "email", "destination": "x@example.com"}]},
            "missing required field `on_success`",
        ),
        (
            {
                "notifications": [
                    {
                        "type": "email",
                        "destination": "ops@example.com",
                        "on_success": True,
                        "on_failure": False,
                    }
                ]
            },
            "notifications must include at least one entry with on_failure true.",
        ),
        (
            {
                "notifications": [
                    {
                        "type": "email",
                        "destination": "not an address",
                        "on_success": False,
                        "on_failure": True,
                    }
                ]
            },
            "Notification destination 'not an address' is not an e-mail address.",
        ),
    ],
)
def test_bad_bodies_are_400_and_write_nothing(client, db, secret, agent, overrides, fragment):
    response = post(client, secret, spec_body(agent["id"], **overrides))
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["message"] == "Validation failed."
    assert any(fragment in error for error in payload["errors"]), payload
    assert config_rows(db) == []
    assert changed_events(db) == []


def test_body_must_be_a_json_object(client, db, secret, agent) -> None:
    url = f"/v2/{PROJECT}/configurations"
    for content, error in (
        (b"[]", "Expected `object`, got `array`"),
        (b'"x"', "Expected `object`, got `str`"),
        (b"null", "Expected `object`, got `null`"),
    ):
        response = client.post(url, content=content, headers=headers(secret))
        assert response.status_code == 400
        assert response.json() == {"message": "Validation failed.", "errors": [error]}
    empty = client.post(url, content=b"", headers=headers(secret))
    assert empty.status_code == 400 and empty.json()["message"] == "Malformed JSON."
    assert config_rows(db) == []


def test_observer_may_not_create(client, db, agent) -> None:
    observer = token(db, role="observer")
    response = post(client, observer, spec_body(agent["id"]))
    assert response.status_code == 403
    assert config_rows(db) == []
    assert client.get(f"/v2/{PROJECT}/configurations", headers=headers(observer)).status_code == 200


def test_no_token_is_401(client, db, agent) -> None:
    response = client.post(f"/v2/{PROJECT}/configurations", json=spec_body(agent["id"]))
    assert response.status_code == 401
    assert client.get(f"/v2/{PROJECT}/configurations").status_code == 401


# -- OQ-37: the agent's document is capped at 1 MB ----------------------------------------------


def big_paths(prefix: str, count: int, length: int) -> list[str]:
    return [f"/{prefix}{i:05d}/" + "x" * length + "/" for i in range(count)]


def big_inclusions(prefix: str, count: int, length: int) -> list[dict[str, str]]:
    return [{"type": "folder", "path": path} for path in big_paths(prefix, count, length)]


def test_a_create_that_would_pass_1_mb_is_400_and_writes_nothing(client, db, secret, agent):
    first = create_configuration(client, secret, agent["id"], big_paths("a", 300, 2000))
    too_much = post(
        client,
        secret,
        spec_body(agent["id"], inclusions=big_inclusions("b", 200, 2000), exclusions=[]),
    )
    assert too_much.status_code == 400, too_much.text
    payload = too_much.json()
    assert payload["message"] == (
        "The agent's configuration document may not exceed 1 MB (1,000,000 bytes)."
    )
    assert len(payload["errors"]) == 1 and "bytes" in payload["errors"][0]
    assert [row.id for row in config_rows(db)] == [first["id"]]
    # Another agent has its own document.
    other = register_agent(client, secret)
    small = post(client, secret, spec_body(other["id"]))
    assert small.status_code == 201


def test_one_body_over_1_mb_is_a_clear_400(client, db, secret, agent) -> None:
    body = spec_body(agent["id"], inclusions=big_inclusions("c", 550, 2000), exclusions=[])
    response = post(client, secret, body)
    assert response.status_code == 400
    assert "1,000,000 bytes" in response.json()["message"]
    assert config_rows(db) == []


def test_an_update_that_would_pass_1_mb_is_400_and_changes_nothing(client, db, secret, agent):
    create_configuration(client, secret, agent["id"], big_paths("a", 300, 2000))
    second = create_configuration(client, secret, agent["id"])
    response = patch(
        client, secret, second["id"], [replace("/inclusions", big_inclusions("b", 200, 2000))]
    )
    assert response.status_code == 400
    assert "1 MB" in response.json()["message"]
    assert get(client, secret, second["id"]).json() == second


# -- CF2 / CF3 --------------------------------------------------------------------------------


def test_list_form_and_detail_form(client, db, secret, agent) -> None:
    empty = client.get(f"/v2/{PROJECT}/configurations", headers=headers(secret))
    assert empty.status_code == 200 and empty.json() == {"configurations": []}
    created = post(client, secret, spec_body(agent["id"])).json()
    second = create_configuration(client, secret, agent["id"], name="Second")
    detail = get(client, secret, created["id"])
    assert detail.status_code == 200 and detail.json() == created
    listed = client.get(f"/v2/{PROJECT}/configurations", headers=headers(secret)).json()
    assert list(listed) == ["configurations"]  # no top-level links (OQ-20)
    assert listed["configurations"][0] == summary_of(created)
    assert list(listed["configurations"][0]) == [
        "project_id",
        "id",
        "agent",
        "name",
        "enabled",
        "schedule",
        "retention",
        "backups",
        "links",
    ]
    assert [c["id"] for c in listed["configurations"]] == [created["id"], second["id"]]


def test_other_projects_configurations_are_invisible(client, db, secret, agent) -> None:
    foreign_agent = rows.agent(db, OTHER_PROJECT)
    foreign = rows.configuration(db, foreign_agent)
    assert client.get(f"/v2/{PROJECT}/configurations", headers=headers(secret)).json() == {
        "configurations": []
    }
    for config_id in (foreign.id, str(uuid.uuid4())):
        for response in (
            get(client, secret, config_id),
            patch(client, secret, config_id, [replace("/name", "mine")]),
            client.delete(f"/v2/{PROJECT}/configurations/{config_id}", headers=headers(secret)),
        ):
            assert response.status_code == 404
            assert response.json() == {"message": "Configuration not found."}
    other_secret = token(db, OTHER_PROJECT)
    own = client.get(
        f"/v2/{OTHER_PROJECT}/configurations/{foreign.id}", headers=headers(other_secret)
    )
    assert own.status_code == 200 and own.json()["name"] == "Nightly"


def test_restorable_filter(client, db, secret, agent) -> None:
    restorable = create_configuration(client, secret, agent["id"], name="R")
    not_restorable = create_configuration(client, secret, agent["id"], name="N")
    untouched = create_configuration(client, secret, agent["id"], name="U")
    rows.backup(db, restorable["id"], restorable=True, snapshot_id=1)
    rows.backup(db, restorable["id"], state="failed")
    rows.backup(db, not_restorable["id"], state="failed")

    def ids(value: str) -> list[str]:
        response = client.get(
            f"/v2/{PROJECT}/configurations", params={"restorable": value}, headers=headers(secret)
        )
        assert response.status_code == 200
        return [c["id"] for c in response.json()["configurations"]]

    assert ids("true") == [restorable["id"]]
    assert ids("false") == [not_restorable["id"], untouched["id"]]
    bad = client.get(
        f"/v2/{PROJECT}/configurations", params={"restorable": "maybe"}, headers=headers(secret)
    )
    assert bad.status_code == 400
    assert bad.json() == {
        "message": "Validation failed.",
        "errors": ["restorable must be true or false."],
    }


def test_last_completed_is_a_reference_to_the_backup(client, db, secret, agent) -> None:
    config = create_configuration(client, secret, agent["id"])
    backup = rows.backup(db, config["id"], snapshot_id=1111, restorable=True)
    with db.transaction() as session:
        session.execute(
            sa.update(Configuration)
            .where(Configuration.id == config["id"])
            .values(last_completed_backup_id=backup.id)
        )
    detail = get(client, secret, config["id"]).json()
    assert detail["backups"]["last_completed"] == refs("backups", backup.id)
    listed = client.get(f"/v2/{PROJECT}/configurations", headers=headers(secret)).json()
    assert listed["configurations"][0]["backups"]["last_completed"] == refs("backups", backup.id)


def test_wrong_methods_are_405(client, secret, agent) -> None:
    config = create_configuration(client, secret, agent["id"])
    put = client.put(
        f"/v2/{PROJECT}/configurations/{config['id']}", json={}, headers=headers(secret)
    )
    assert put.status_code == 405
    assert (
        client.delete(f"/v2/{PROJECT}/configurations", headers=headers(secret)).status_code == 405
    )
    assert (
        client.patch(f"/v2/{PROJECT}/configurations", json=[], headers=headers(secret)).status_code
        == 405
    )


# -- CF4 --------------------------------------------------------------------------------------


def test_patch_every_writable_path(client, db, secret, agent) -> None:
    config = post(client, secret, spec_body(agent["id"])).json()
    new_inclusions = [{"type": "folder", "path": "/srv"}, {"type": "file", "path": "/etc/hosts"}]
    new_exclusions = [{"type": "folder", "path": "/srv/tmp/"}]
    new_notifications = [
        {"type": "email", "destination": "ops@example.org", "on_success": False, "on_failure": True}
    ]
    weekly = {
        "recurrence": ["RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=TH;BYHOUR=14;BYMINUTE=0"],
        "time_zone": "America/Chicago",
    }
    response = patch(
        client,
        secret,
        config["id"],
        [
            replace("/name", "Weekly"),
            replace("/enabled", True),
            replace("/schedule", weekly),
            replace("/retention/days", 0),
            replace("/inclusions", new_inclusions),
            replace("/exclusions", new_exclusions),
            replace("/notifications", new_notifications),
        ],
    )
    assert response.status_code == 204, response.text
    assert response.content == b""
    after = get(client, secret, config["id"]).json()
    due = after["backups"]["next"]["scheduled_time"]
    assert datetime.strptime(due, "%Y-%m-%dT%H:%M:%SZ").weekday() in (3, 4)  # Thursday local
    assert after == config | {
        "name": "Weekly",
        "schedule": {"start": config["schedule"]["start"], **weekly},
        "retention": {"days": 0},
        "inclusions": new_inclusions,
        "exclusions": new_exclusions,
        "notifications": new_notifications,
        "backups": {"last_completed": None, "next": {"scheduled_time": due}},
    }
    assert len(changed_events(db)) == 2  # create + update


def test_schedule_can_be_removed_and_set_again(client, secret, agent) -> None:
    config = post(client, secret, spec_body(agent["id"])).json()
    assert patch(client, secret, config["id"], [replace("/schedule", None)]).status_code == 204
    cleared = get(client, secret, config["id"]).json()
    assert cleared["schedule"] is None
    assert cleared["backups"]["next"] == {"scheduled_time": None}
    assert (
        patch(client, secret, config["id"], [replace("/schedule", EVERY_OTHER_HOUR)]).status_code
        == 204
    )
    again = get(client, secret, config["id"]).json()
    # The anchor is the configuration's creation time (spec §16.1).
    assert again["schedule"] == config["schedule"]
    assert again["backups"]["next"] == config["backups"]["next"]


def test_a_disabled_configuration_has_no_next_time(client, secret, agent) -> None:
    config = post(client, secret, spec_body(agent["id"])).json()
    assert patch(client, secret, config["id"], [replace("/enabled", False)]).status_code == 204
    after = get(client, secret, config["id"]).json()
    assert after["enabled"] is False
    assert after["schedule"] == config["schedule"]
    assert after["backups"]["next"] == {"scheduled_time": None}


@pytest.mark.parametrize(
    ("ops", "fragment"),
    [
        ([{"op": "add", "path": "/name", "value": "x"}], "op 'add' at '/name' is not supported"),
        ([replace("/agent_id", str(uuid.uuid4()))], "/agent_id cannot be changed"),
        ([replace("/deleted", True)], "/deleted cannot be changed"),
        ([replace("/schedule/start", "2014-08-05T18:22:21Z")], "/schedule/start cannot be changed"),
        ([replace("/retention", {"days": 3})], "/retention cannot be changed"),
        ([replace("/name", "")], "name must not be empty."),
        ([replace("/name", 3)], "/name: Expected `str`, got `int`"),
        ([replace("/enabled", None)], "/enabled: Expected `bool`, got `null`"),
        ([replace("/retention/days", -1)], "retention.days must be an integer from 0"),
        ([replace("/retention/days", "7")], "/retention/days: Expected `int`, got `str`"),
        (
            [replace("/schedule", {"recurrence": ["RRULE:FREQ=MINUTELY"], "time_zone": "UTC"})],
            "FREQ",
        ),
        ([replace("/schedule", {"time_zone": "UTC"})], "missing required field `recurrence`"),
        (
            [replace("/inclusions", [{"type": "folder", "path": "/data/"}])],
            "Exclusion '/web/cache/'",
        ),
        ([replace("/exclusions", [{"type": "file", "path": "/web"}])], "same path"),
        ([replace("/notifications", [])], "on_failure true"),
        ([replace("/notifications", [{"type": "email"}])], "missing required field"),
        ([{"op": "replace", "path": "/name"}], "op at '/name' has no value."),
    ],
)
def test_bad_patches_are_400_atomic_and_silent(client, db, secret, agent, ops, fragment) -> None:
    config = post(client, secret, spec_body(agent["id"])).json()
    response = patch(client, secret, config["id"], [replace("/name", "Changed"), *ops])
    assert response.status_code == 400, response.text
    assert response.json()["message"] == "Validation failed."
    assert any(fragment in e for e in response.json()["errors"]), response.json()
    assert get(client, secret, config["id"]).json() == config
    assert len(changed_events(db)) == 1  # only the create


def test_patch_rules_apply_to_the_resulting_document(client, secret, agent) -> None:
    config = post(client, secret, spec_body(agent["id"])).json()
    # Replacing inclusions alone would strand the exclusions; with them replaced too it is fine.
    response = patch(
        client,
        secret,
        config["id"],
        [
            replace("/inclusions", [{"type": "folder", "path": "/data/"}]),
            replace("/exclusions", [{"type": "folder", "path": "/data/tmp"}]),
        ],
    )
    assert response.status_code == 204
    # Later operations on the same path win.
    response = patch(
        client, secret, config["id"], [replace("/name", "one"), replace("/name", "two")]
    )
    assert response.status_code == 204
    assert get(client, secret, config["id"]).json()["name"] == "two"


def test_patch_needs_the_json_patch_content_type(client, secret, agent) -> None:
    config = create_configuration(client, secret, agent["id"])
    response = client.patch(
        f"/v2/{PROJECT}/configurations/{config['id']}",
        json=[replace("/name", "x")],
        headers=headers(secret),
    )
    assert response.status_code == 400
    assert response.json()["message"] == "Content-Type must be application/json-patch+json."


def test_observer_may_not_patch(client, db, secret, agent) -> None:
    config = create_configuration(client, secret, agent["id"])
    observer = token(db, role="observer")
    assert patch(client, observer, config["id"], [replace("/name", "x")]).status_code == 403
    assert get(client, secret, config["id"]).json() == config


# -- CF5 --------------------------------------------------------------------------------------


def test_delete_is_soft_and_one_way(client, db, secret, agent) -> None:
    config = post(client, secret, spec_body(agent["id"])).json()
    response = client.delete(
        f"/v2/{PROJECT}/configurations/{config['id']}", headers=headers(secret)
    )
    assert response.status_code == 204
    assert response.content == b""
    detail = get(client, secret, config["id"])
    assert detail.status_code == 200
    assert detail.json() == config | {
        "deleted": True,
        "backups": {"last_completed": None, "next": {"scheduled_time": None}},
    }
    assert client.get(f"/v2/{PROJECT}/configurations", headers=headers(secret)).json() == {
        "configurations": []
    }
    again = client.delete(f"/v2/{PROJECT}/configurations/{config['id']}", headers=headers(secret))
    assert again.status_code == 404
    assert again.json() == {"message": "Configuration not found."}
    patched = patch(client, secret, config["id"], [replace("/name", "back")])
    assert patched.status_code == 404
    assert patched.json() == {"message": "Configuration not found."}
    assert len(changed_events(db)) == 2  # create + delete


def test_creator_may_not_delete(client, db, secret, agent) -> None:
    config = create_configuration(client, secret, agent["id"])
    creator = token(db, role="creator")
    response = client.delete(
        f"/v2/{PROJECT}/configurations/{config['id']}", headers=headers(creator)
    )
    assert response.status_code == 403
    assert get(client, secret, config["id"]).json()["deleted"] is False


def test_deleted_configurations_free_their_share_of_the_1_mb(client, db, secret, agent) -> None:
    big = create_configuration(client, secret, agent["id"], big_paths("a", 300, 2000))
    body = spec_body(agent["id"], inclusions=big_inclusions("b", 200, 2000), exclusions=[])
    assert post(client, secret, body).status_code == 400
    client.delete(f"/v2/{PROJECT}/configurations/{big['id']}", headers=headers(secret))
    assert post(client, secret, body).status_code == 201


def test_ids_no_row_can_hold_are_simply_not_found(client, secret) -> None:
    # PostgreSQL refuses NUL in text: such ids must not reach the database (no 500).
    url = f"/v2/{PROJECT}/configurations/a%00b"
    for response in (
        client.get(url, headers=headers(secret)),
        client.delete(url, headers=headers(secret)),
        patch(client, secret, "a%00b", [replace("/name", "x")]),
    ):
        assert response.status_code == 404
        assert response.json() == {"message": "Not found."}
    created = post(client, secret, spec_body("a\x00b"))
    assert created.status_code == 400
    assert created.json()["errors"] == ["Strings may not contain NUL characters."]
