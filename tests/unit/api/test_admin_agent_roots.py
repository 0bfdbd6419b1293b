"""Roots per agent through the API: with no roots anywhere CF1, R1 and A10 are 400s naming the
setting; the operator sets an agent's roots (`/v2/admin/agents/{agent_id}/roots`), which win over
CLOUDBACKUP_ALLOWED_ROOTS; a tenant's token, even its admin's, cannot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from cloudbackup.server import create_app
from cloudbackup.store.tables import Agent, BrowseRequest, Configuration, Restore
from factories import rows
from factories.api import PROJECT, configuration_body, headers, register_agent, token
from factories.runs import Recorder

OPERATOR = "operator"


@pytest.fixture
def unrooted(settings, db) -> Iterator[TestClient[Any]]:
    """The API with CLOUDBACKUP_ALLOWED_ROOTS empty (the default)."""
    app = create_app(
        msgspec.structs.replace(settings, allowed_roots=""), database=db, dispatcher=Recorder()
    )
    with TestClient(app=app) as client:
        yield client


def _roots_url(agent_id: str) -> str:
    return f"/v2/admin/agents/{agent_id}/roots"


def _put_roots(client, db, agent_id: str, roots: list[str] | None, project: str = OPERATOR):
    return client.put(
        _roots_url(agent_id), json={"roots": roots}, headers=headers(token(db, project))
    )


def _names_the_setting(problem: str) -> None:
    assert "No allowed roots" in problem
    assert "CLOUDBACKUP_ALLOWED_ROOTS" in problem
    assert "cloudbackup roots set <agent_id> <folder>..." in problem


def test_without_any_roots_configurations_restores_and_host_browsing_are_400(
    unrooted, db, tmp_path
):
    secret = token(db)
    agent = register_agent(unrooted, secret)
    created = unrooted.post(
        f"/v2/{PROJECT}/configurations",
        json=configuration_body(agent["id"], [f"{tmp_path}/data/"]),
        headers=headers(secret),
    )
    source = rows.agent(db)
    backup = rows.backup(db, rows.configuration(db, source).id, snapshot_id=1, restorable=True)
    restore = unrooted.post(
        f"/v2/{PROJECT}/restores",
        json={
            "backup_id": backup.id,
            "destination_agent_id": source.id,
            "destination_path": f"{tmp_path}/out/",
            "overwrite_files": False,
            "encrypted_password_hex": None,
            "inclusions": [],
            "exclusions": [],
        },
        headers=headers(secret),
    )
    browse = unrooted.post(
        f"/v2/{PROJECT}/agents/{agent['id']}/browse-requests",
        json={"path": f"{tmp_path}/", "path_encoded": None},
        headers=headers(secret),
    )

    for response in (created, restore, browse):
        assert response.status_code == 400, response.text
        [problem] = response.json()["errors"]
        _names_the_setting(problem)
    with db.transaction() as session:
        assert session.execute(sa.select(Restore)).first() is None
        assert session.execute(sa.select(BrowseRequest)).first() is None
        configurations = session.execute(sa.select(Configuration)).scalars().all()
        assert [c.agent_id for c in configurations] == [source.id]  # only the row made above


def test_the_operator_sets_roots_that_win_over_the_fallback(client, db, tmp_path):
    # The suites' fallback is `/`; this agent's own roots narrow it to one folder.
    secret = token(db)
    narrowed = register_agent(client, secret)
    other = register_agent(client, secret)
    allowed = tmp_path / "allowed"

    response = _put_roots(client, db, narrowed["id"], [f"{allowed}/", f"{allowed}/../allowed"])
    assert response.status_code == 200, response.text
    assert response.json()["roots"] == [str(allowed)]  # normalized, once
    assert response.json()["effective_roots"] == [str(allowed)]
    url = f"/v2/{PROJECT}/configurations"
    inside = client.post(
        url, json=configuration_body(narrowed["id"], [f"{allowed}/site/"]), headers=headers(secret)
    )
    outside = client.post(
        url, json=configuration_body(narrowed["id"], ["/srv/data/"]), headers=headers(secret)
    )
    fallback = client.post(
        url, json=configuration_body(other["id"], ["/srv/data/"]), headers=headers(secret)
    )

    assert inside.status_code == 201, inside.text
    assert outside.status_code == 400
    assert outside.json()["errors"] == [
        f"Inclusion '/srv/data/' lies outside the allowed roots ({allowed}; the agent's roots)."
    ]
    assert fallback.status_code == 201, fallback.text
    # Back to the fallback, then nothing at all.
    cleared = _put_roots(client, db, narrowed["id"], None).json()
    assert cleared["roots"] is None and cleared["effective_roots"] == ["/"]
    assert _put_roots(client, db, narrowed["id"], []).json()["effective_roots"] == []
    refused = client.post(
        url, json=configuration_body(narrowed["id"], [f"{allowed}/site/"]), headers=headers(secret)
    )
    assert refused.status_code == 400
    _names_the_setting(refused.json()["errors"][0])


def test_a_tenant_token_cannot_read_or_set_roots(client, db):
    agent = rows.agent(db)
    for role in ("admin", "creator"):
        tenant = headers(token(db, PROJECT, role))
        assert client.get(_roots_url(agent.id), headers=tenant).status_code == 403
        put = client.put(_roots_url(agent.id), json={"roots": ["/"]}, headers=tenant)
        assert put.status_code == 403
        assert "operator project" in put.json()["message"]
    observer = headers(token(db, OPERATOR, "observer"))
    assert client.get(_roots_url(agent.id), headers=observer).status_code == 200
    assert (
        client.put(_roots_url(agent.id), json={"roots": ["/"]}, headers=observer).status_code == 403
    )
    with db.transaction() as session:
        assert session.get(Agent, agent.id).allowed_roots is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"roots": ["srv"]}, "Root 'srv' must be an absolute path."),
        ({"roots": "/srv"}, "Expected `array | null`"),
        ({"roots": ["/srv"], "extra": 1}, "Object contains unknown field `extra`"),
        ({}, "Object missing required field `roots`"),
    ],
)
def test_bad_roots_are_400(client, db, body, problem):
    agent = rows.agent(db)
    response = client.put(_roots_url(agent.id), json=body, headers=headers(token(db, OPERATOR)))
    assert response.status_code == 400
    assert problem in " ".join(response.json()["errors"])


def test_roots_of_an_unknown_or_deleted_agent_are_404(client, db):
    deleted = rows.agent(db, deleted=True)
    for agent_id in ("no-such-agent", deleted.id):
        assert _put_roots(client, db, agent_id, ["/srv"]).status_code == 404


def test_the_roots_show_what_is_always_refused(client, db, settings):
    agent = rows.agent(db)
    shown = client.get(_roots_url(agent.id), headers=headers(token(db, OPERATOR))).json()
    assert shown["effective_from"] == "CLOUDBACKUP_ALLOWED_ROOTS"
    db_file = settings.resolved_database_url.removeprefix("sqlite:///")
    assert {str(Path(settings.data_dir).resolve()), db_file, str(settings.resolved_vault_path)} <= (
        set(shown["protected"])
    )
