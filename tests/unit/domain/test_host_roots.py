"""The service's own files are never touched, whatever the roots, also through a link; and a
worker judges the agent's roots as they are when it runs, not as they were when a configuration,
restore or browse request was accepted."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from cloudbackup.domain.backup_run import execute_backup
from cloudbackup.domain.backups import BackupService
from cloudbackup.domain.browse import BrowseAsk, BrowseService, answer_browse
from cloudbackup.domain.errors import InvalidInput
from cloudbackup.domain.restore_run import execute_restore
from cloudbackup.domain.restores import RestoreRequest, RestoreService
from cloudbackup.domain.roots import AgentRootsService, RootsPolicy
from cloudbackup.engine import open_vault
from cloudbackup.server import create_app
from cloudbackup.settings import Settings
from cloudbackup.store.tables import Backup, BackupError, BrowseRequest, Restore, RestoreError
from factories import rows
from factories.api import PROJECT, configuration_body, headers, register_agent, token
from factories.runs import Recorder, backed_up

SERVICE_FILES = "reaches the service's own files"


@pytest.fixture
def keyed(settings: Settings, tmp_path: Path) -> Settings:
    """The suites' settings with a key folder, and the data folder made, all in tmp_path."""
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "another-vault.key").write_text("secret")
    Path(settings.data_dir).mkdir(exist_ok=True)
    return msgspec.structs.replace(settings, vault_key_dir=str(keys))


def _set_roots(db, settings: Settings, agent_id: str, roots: list[str] | None) -> None:
    AgentRootsService(db, RootsPolicy.from_settings(settings)).set(agent_id, roots)


def _db_file(settings: Settings) -> str:
    return settings.resolved_database_url.removeprefix("sqlite:///")


def test_inclusions_reaching_the_service_files_are_refused_inside_an_allowed_root(
    db, keyed, tmp_path
):
    trees = tmp_path / "trees"
    trees.mkdir()
    os.symlink(keyed.resolved_vault_path, trees / "to-vault")
    os.symlink(tmp_path / "keys", trees / "to-keys")
    confined = msgspec.structs.replace(keyed, allowed_roots=str(tmp_path))
    app = create_app(confined, database=db, dispatcher=Recorder())
    refused = {
        "the vault folder": f"{confined.resolved_vault_path}/",
        "a vault": f"{confined.resolved_vault_path}/some-vault/",
        "the database file": _db_file(confined),
        "its write-ahead log": _db_file(confined) + "-wal",
        "the data folder": f"{confined.data_dir}/",
        "the key folder": f"{tmp_path}/keys/",
        "a link to the vault": f"{trees}/to-vault/",
        "a path through a link to the keys": f"{trees}/to-keys/another-vault.key",
    }
    with TestClient(app=app) as client:
        secret = token(db)
        agent = register_agent(client, secret)
        url = f"/v2/{PROJECT}/configurations"
        for what, path in refused.items():
            kind = "file" if path.endswith((".db", ".key", "-wal")) else "folder"
            body = configuration_body(agent["id"])
            body["inclusions"] = [{"type": kind, "path": path}]
            response = client.post(url, json=body, headers=headers(secret))
            assert response.status_code == 400, what
            [problem] = response.json()["errors"]
            assert SERVICE_FILES in problem, (what, problem)
            if what.startswith("a link"):  # where it leads is the operator's business
                assert str(confined.resolved_vault_path) not in problem
        # A folder that holds them is accepted: the backup leaves them out (next test).
        holder = client.post(
            url, json=configuration_body(agent["id"], [f"{tmp_path}/"]), headers=headers(secret)
        )
        assert holder.status_code == 201, holder.text
        moved = client.patch(
            f"{url}/{holder.json()['id']}",
            json=[{"op": "add", "path": "/inclusions/-", "value": refused["a link to the vault"]}],
            headers={**headers(secret), "Content-Type": "application/json-patch+json"},
        )
        assert moved.status_code == 400


def test_a_backup_of_a_folder_holding_the_service_files_leaves_them_out(db, keyed, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "index.html").write_text("public")
    (Path(keyed.data_dir) / "celerybeat-schedule").write_text("service state")

    _, _, backup = backed_up(db, keyed, tmp_path)

    paths = {
        os.fsdecode(entry.path)
        for entry in open_vault(keyed, backup.vault_id).read_manifest(backup.snapshot_id).entries
    }
    assert f"{tree}/index.html" in paths
    for service_path in (_db_file(keyed), keyed.data_dir, f"{tmp_path}/keys", f"{tmp_path}/vault"):
        assert not any(p == service_path or p.startswith(service_path + "/") for p in paths), (
            service_path
        )


def test_a_backup_refuses_inclusions_the_narrowed_roots_no_longer_allow(db, settings, tmp_path):
    for name in ("kept", "dropped"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "file.txt").write_text(name)
    agent = rows.agent(db)
    config = rows.configuration(
        db,
        agent,
        inclusions=[
            {"type": "folder", "path": f"{tmp_path}/kept/"},
            {"type": "folder", "path": f"{tmp_path}/dropped/"},
        ],
    )
    # Accepted under the suites' `/`; then the operator narrows the agent to one folder.
    _set_roots(db, settings, agent.id, [f"{tmp_path}/kept"])
    partly = BackupService(db).start(agent.project_id, config.id, "start_requested", None)

    assert execute_backup(db, settings, partly.id) == "completed_with_errors"
    with db.transaction() as session:
        errors = session.execute(
            sa.select(BackupError).where(BackupError.backup_id == partly.id)
        ).scalars()
        [error] = list(errors)
    assert (error.path, error.type) == (f"{tmp_path}/dropped/", "file_unreadable")
    assert "lies outside the allowed roots" in error.exception_description
    assert "the agent's roots" in error.exception_description

    # Narrowed to elsewhere: nothing may be read, the run fails and says why.
    _set_roots(db, settings, agent.id, ["/srv/elsewhere"])
    nothing = BackupService(db).start(agent.project_id, config.id, "start_requested", None)
    assert execute_backup(db, settings, nothing.id) == "failed"
    with db.transaction() as session:
        row = session.execute(sa.select(Backup).where(Backup.id == nothing.id)).scalar_one()
    assert row.snapshot_id is None and row.errors_count == 2
    assert f"'{tmp_path}/kept/' lies outside the allowed roots" in row.errors_diagnostics
    assert f"'{tmp_path}/dropped/' lies outside the allowed roots" in row.errors_diagnostics


def test_a_rename_is_not_blocked_by_narrowed_roots(client, db, settings):
    secret = token(db)
    agent = register_agent(client, secret)
    url = f"/v2/{PROJECT}/configurations"
    created = client.post(url, json=configuration_body(agent["id"]), headers=headers(secret))
    _set_roots(db, settings, agent["id"], ["/srv/elsewhere"])
    patch_headers = {**headers(secret), "Content-Type": "application/json-patch+json"}
    renamed = client.patch(
        f"{url}/{created.json()['id']}",
        json=[{"op": "replace", "path": "/name", "value": "Renamed"}],
        headers=patch_headers,
    )
    assert renamed.status_code == 204, renamed.text


def _restore_request(backup, agent, destination: str | None) -> RestoreRequest:
    return RestoreRequest(backup.id, agent.id, destination, True, None, (), ())


def test_a_restore_never_writes_through_a_link_into_the_service_files(db, keyed, tmp_path):
    source = tmp_path / "source"
    (source / "keys").mkdir(parents=True)
    (source / "keys" / "another-vault.key").write_text("attacker's key")
    (source / "site.html").write_text("public")
    agent, _, backup = backed_up(db, keyed, source)
    service = RestoreService(db, Recorder(), RootsPolicy.from_settings(keyed))
    # Straight onto the service's files: refused before anything is recorded.
    for destination in (f"{keyed.resolved_vault_path}/", f"{tmp_path}/keys/"):
        with pytest.raises(InvalidInput) as refused:
            service.start(PROJECT, _restore_request(backup, agent, destination))
        assert SERVICE_FILES in refused.value.errors[0]
    # A destination whose restored folder is already a link to the key folder.
    out = tmp_path / "out"
    landing = out / str(source).lstrip("/")
    landing.mkdir(parents=True)
    os.symlink(tmp_path / "keys", landing / "keys")
    restore = service.start(PROJECT, _restore_request(backup, agent, f"{out}/"))

    assert execute_restore(db, keyed, restore.id) == "completed_with_errors"
    assert (tmp_path / "keys" / "another-vault.key").read_text() == "secret"
    assert (landing / "site.html").read_text() == "public"
    with db.transaction() as session:
        errors = (
            session.execute(sa.select(RestoreError).where(RestoreError.restore_id == restore.id))
            .scalars()
            .all()
        )
    assert [(e.path, e.type) for e in errors] == [
        (f"{landing}/keys/another-vault.key", "file_unwritable")
    ]
    assert SERVICE_FILES in errors[0].exception_description
    assert str(tmp_path / "keys") not in errors[0].exception_description


def test_a_restore_whose_destination_became_a_link_to_the_vault_fails(db, keyed, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "config").write_text("an old vault config")
    agent, _, backup = backed_up(db, keyed, source)
    vault_dir = keyed.resolved_vault_path / agent.vault_id
    before = sorted(p.name for p in vault_dir.iterdir())
    destination = tmp_path / "restored"
    destination.mkdir()
    restore = RestoreService(db, Recorder(), RootsPolicy.from_settings(keyed)).start(
        PROJECT, _restore_request(backup, agent, f"{destination}/")
    )
    destination.rmdir()
    os.symlink(vault_dir, destination)

    assert execute_restore(db, keyed, restore.id) == "failed"
    with db.transaction() as session:
        row = session.execute(sa.select(Restore).where(Restore.id == restore.id)).scalar_one()
    assert row.errors_diagnostics.startswith("Nothing restored: destination_path")
    assert SERVICE_FILES in row.errors_diagnostics
    assert sorted(p.name for p in vault_dir.iterdir()) == before


def test_a_host_browse_answers_with_the_roots_as_they_are_when_the_worker_runs(
    db, settings, tmp_path
):
    agent = rows.agent(db)
    service = BrowseService(db, Recorder(), settings)
    ask = BrowseAsk(path=f"{tmp_path}/", path_encoded=None)
    allowed = service.ask_host(agent.project_id, agent.id, ask)
    narrowed = service.ask_host(agent.project_id, agent.id, ask)
    answer_browse(db, settings, allowed)
    _set_roots(db, settings, agent.id, ["/srv/elsewhere"])
    answer_browse(db, settings, narrowed)

    with db.transaction() as session:
        answers = {row.id: row for row in session.execute(sa.select(BrowseRequest)).scalars()}
    assert answers[allowed].succeeded is True
    assert answers[narrowed].succeeded is False and answers[narrowed].items == []


def test_the_service_files_cannot_be_browsed(db, keyed):
    agent = rows.agent(db)
    service = BrowseService(db, Recorder(), keyed)
    for path in (keyed.data_dir, str(keyed.resolved_vault_path), keyed.vault_key_dir):
        with pytest.raises(InvalidInput) as refused:
            service.ask_host(
                agent.project_id, agent.id, BrowseAsk(path=f"{path}/", path_encoded=None)
            )
        assert SERVICE_FILES in refused.value.errors[0]
