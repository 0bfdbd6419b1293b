"""AC1-AC3: activities of backups, restores and cleanups, newest change first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from cloudbackup.store.tables import BACKUPS, CLEANUPS, CONFIGURATIONS, RESTORES
from factories import rows
from factories.api import OTHER_PROJECT, PROJECT, headers, token

BASE = f"/v2/{PROJECT}"
HOST = "http://testserver.local"
T0 = datetime(2014, 10, 27, 18, 22, 0, tzinfo=UTC)


def touch(db, table, row_id, seconds):
    """Set the row's last change to T0 + ``seconds``."""
    with db.transaction() as session:
        session.execute(
            sa.update(table)
            .where(table.c.id == row_id)
            .values(updated_at=T0 + timedelta(seconds=seconds))
        )


@pytest.fixture
def world(db):
    """Agent A runs configuration X (two backups) and a cleanup; B receives a restore of X."""
    a, b = rows.agent(db), rows.agent(db)
    x, y = rows.configuration(db, a), rows.configuration(db, a)
    old = rows.backup(db, x.id, state="completed_with_errors", snapshot_id=1, restorable=True)
    new = rows.backup(db, x.id, state="in_progress")
    other = rows.backup(db, y.id, state="failed")
    restore = rows.restore(db, old.id, b, state="completed_with_errors")
    cleanup = rows.cleanup(db, a, state="completed_with_errors")
    touch(db, BACKUPS, old.id, 1)
    touch(db, RESTORES, restore.id, 19)
    touch(db, CLEANUPS, cleanup.id, 20)
    touch(db, BACKUPS, new.id, 21)
    touch(db, BACKUPS, other.id, 5)
    return {
        "a": a, "b": b, "x": x, "y": y, "old": old, "new": new, "other": other,
        "restore": restore, "cleanup": cleanup,
    }  # fmt: skip


def listing(client, secret, path, **query):
    response = client.get(f"{BASE}{path}", params=query, headers=headers(secret))
    assert response.status_code == 200, response.text
    return response.json()


def test_project_activities_are_uniform_summaries_newest_first(client, db, world):
    secret = token(db)
    body = listing(client, secret, "/activities")

    assert [a["id"] for a in body["activities"]] == [
        world["new"].id,
        world["cleanup"].id,
        world["restore"].id,
        world["other"].id,
        world["old"].id,
    ]
    assert body["links"] == []
    new, cleanup, restore = body["activities"][:3]
    a, b, x = world["a"].id, world["b"].id, world["x"].id
    assert new == {
        "id": world["new"].id,
        "type": "backup",
        "last_updated_time": "2014-10-27T18:22:21.000000Z",
        "state": "in_progress",
        "agent": {"id": a, "links": [{"href": f"{HOST}{BASE}/agents/{a}", "rel": "full"}]},
        "configuration": {
            "id": x,
            "links": [{"href": f"{HOST}{BASE}/configurations/{x}", "rel": "full"}],
        },
        "links": [{"href": f"{HOST}{BASE}/backups/{world['new'].id}", "rel": "backup"}],
    }
    assert list(cleanup) == ["id", "type", "last_updated_time", "state", "agent", "links"]
    assert cleanup["type"] == "cleanup" and cleanup["agent"]["id"] == a
    assert cleanup["links"] == [
        {"href": f"{HOST}{BASE}/cleanups/{world['cleanup'].id}", "rel": "cleanup"}
    ]
    # A restore's agent is its destination; its configuration the backup's.
    assert restore["type"] == "restore" and restore["agent"]["id"] == b
    assert restore["configuration"]["id"] == x
    assert restore["links"][0]["rel"] == "restore"


def test_pages_cut_the_whole_sorted_set_in_either_direction(client, db, world):
    secret = token(db)
    first = listing(client, secret, "/activities", limit=2)
    assert [a["id"] for a in first["activities"]] == [world["new"].id, world["cleanup"].id]
    marker = world["cleanup"].id
    assert first["links"] == [
        {"href": f"{HOST}{BASE}/activities?limit=2&marker={marker}", "rel": "next"}
    ]
    second = listing(client, secret, "/activities", limit=2, marker=marker)
    assert [a["id"] for a in second["activities"]] == [world["restore"].id, world["other"].id]
    assert [link["rel"] for link in second["links"]] == ["next", "previous"]
    assert second["links"][1]["href"] == (
        f"{HOST}{BASE}/activities?limit=2&marker={world['restore'].id}&sort_dir=asc"
    )
    oldest = listing(client, secret, "/activities", sort_dir="asc", limit=1)
    assert [a["id"] for a in oldest["activities"]] == [world["old"].id]
    assert oldest["links"][0]["href"].endswith(f"marker={world['old'].id}&sort_dir=asc")


def test_equal_times_still_page_without_loss_or_repeat(client, db):
    secret = token(db)
    agent = rows.agent(db)
    config = rows.configuration(db, agent)
    made = [rows.backup(db, config.id) for _ in range(5)]
    for backup in made:
        touch(db, BACKUPS, backup.id, 0)
    seen, marker = [], None
    while True:
        query = {"limit": 2, **({"marker": marker} if marker else {})}
        page = listing(client, secret, "/activities", **query)
        seen += [a["id"] for a in page["activities"]]
        if not any(link["rel"] == "next" for link in page["links"]):
            break
        marker = seen[-1]
    assert sorted(seen) == sorted(b.id for b in made) and len(seen) == 5


def test_agent_activities_are_its_backups_cleanups_and_restores_onto_it(client, db, world):
    secret = token(db)
    of_a = listing(client, secret, f"/agents/{world['a'].id}/activities")["activities"]
    assert [a["id"] for a in of_a] == [
        world["new"].id,
        world["cleanup"].id,
        world["other"].id,
        world["old"].id,
    ]
    of_b = listing(client, secret, f"/agents/{world['b'].id}/activities")["activities"]
    assert [a["id"] for a in of_b] == [world["restore"].id]


def test_configuration_activities_are_its_backups_and_their_restores(client, db, world):
    """OQ-35: no cleanups (a cleanup has no configuration)."""
    secret = token(db)
    of_x = listing(client, secret, f"/configurations/{world['x'].id}/activities")["activities"]
    assert [a["id"] for a in of_x] == [world["new"].id, world["restore"].id, world["old"].id]
    page = listing(client, secret, f"/configurations/{world['x'].id}/activities", limit=1)
    assert page["links"][0]["href"].startswith(
        f"{HOST}{BASE}/configurations/{world['x'].id}/activities?"
    )


def test_markers_must_belong_to_the_list(client, db, world):
    secret = token(db)
    for path, marker in (
        ("/activities", "nope"),
        (f"/configurations/{world['x'].id}/activities", world["cleanup"].id),
        (f"/agents/{world['b'].id}/activities", world["old"].id),
    ):
        response = client.get(f"{BASE}{path}", params={"marker": marker}, headers=headers(secret))
        assert response.status_code == 400, response.text
        assert "not an activity of this list" in response.json()["errors"][0]
    for query in ({"limit": "0"}, {"limit": "x"}, {"sort_dir": "sideways"}):
        response = client.get(f"{BASE}/activities", params=query, headers=headers(secret))
        assert response.status_code == 400


def test_unknown_or_foreign_parents_are_404_and_other_projects_are_invisible(client, db, world):
    secret = token(db)
    foreign_agent = rows.agent(db, OTHER_PROJECT)
    foreign_config = rows.configuration(db, foreign_agent)
    rows.backup(db, foreign_config.id)
    for path, message in (
        (f"/agents/{foreign_agent.id}/activities", "Agent not found."),
        ("/agents/nope/activities", "Agent not found."),
        (f"/configurations/{foreign_config.id}/activities", "Configuration not found."),
    ):
        response = client.get(f"{BASE}{path}", headers=headers(secret))
        assert response.status_code == 404
        assert response.json() == {"message": message}
    assert len(listing(client, secret, "/activities")["activities"]) == 5
    theirs = client.get(
        f"/v2/{OTHER_PROJECT}/activities", headers=headers(token(db, OTHER_PROJECT))
    ).json()["activities"]
    assert [a["agent"]["id"] for a in theirs] == [foreign_agent.id]


def test_a_deleted_configuration_keeps_its_history(client, db, world):
    with db.transaction() as session:
        session.execute(
            sa.update(CONFIGURATIONS)
            .where(CONFIGURATIONS.c.id == world["x"].id)
            .values(deleted=True)
        )
    path = f"/configurations/{world['x'].id}/activities"
    ids = [a["id"] for a in listing(client, token(db), path)["activities"]]
    assert ids == [world["new"].id, world["restore"].id, world["old"].id]


def test_empty_project_lists_nothing(client, db):
    assert listing(client, token(db), "/activities") == {"activities": [], "links": []}
