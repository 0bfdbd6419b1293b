"""CLOUDBACKUP_ALLOWED_ROOTS (the fallback of every agent's roots): inclusions must lie in the
allowed roots (the API refuses others), and the worker refuses an inclusion that leads out of
them through a symbolic link. Per-agent roots and the service's own files: test_host_roots.py."""

from __future__ import annotations

import os

import msgspec
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from cloudbackup.domain.backup_run import confine, execute_backup
from cloudbackup.domain.backups import BackupService
from cloudbackup.domain.browse import BrowseAsk, BrowseService, answer_browse
from cloudbackup.domain.configurations import PathItem, require_in_roots
from cloudbackup.domain.errors import InvalidInput
from cloudbackup.domain.restore_run import execute_restore
from cloudbackup.domain.restores import RestoreRequest, RestoreService
from cloudbackup.domain.roots import HostRoots, RootsPolicy
from cloudbackup.engine import open_vault
from cloudbackup.server import create_app
from cloudbackup.settings import load_settings
from cloudbackup.store.tables import Backup, BackupError, BrowseRequest, Restore
from factories import rows
from factories.api import PROJECT, configuration_body, headers, register_agent, token
from factories.runs import backed_up

ROOTS = ("/srv/data", "/home")
FALLBACK = "CLOUDBACKUP_ALLOWED_ROOTS"


def outside_roots(path: str, roots: tuple[str, ...]) -> bool:
    return HostRoots(roots, (), FALLBACK).refusal("path", path) is not None


@pytest.mark.parametrize(
    ("path", "outside"),
    [
        ("/srv/data/", False),
        ("/srv/data/site/index.html", False),
        ("/home/alice/", False),
        ("/srv/database/", True),  # a sibling with a common prefix is not inside
        ("/srv/", True),  # a parent of a root is not inside it
        ("/etc/shadow", True),
        ("/srv/data/../../etc/", True),  # `..` is resolved before the comparison
        ("/", True),
    ],
)
def test_paths_are_judged_component_by_component(path, outside):
    assert outside_roots(path, ROOTS) is outside


def test_no_roots_means_nothing_and_a_root_of_slash_allows_everything():
    assert outside_roots("/etc/shadow", ()) is True
    assert outside_roots("/etc/shadow", ("/",)) is False


def test_the_setting_is_a_colon_separated_list_of_absolute_folders():
    assert load_settings({"CLOUDBACKUP_ALLOWED_ROOTS": "/srv/data/:/home"}).allowed_root_list == (
        "/srv/data",
        "/home",
    )
    with pytest.raises(SystemExit):
        _ = load_settings({"CLOUDBACKUP_ALLOWED_ROOTS": "srv"}).allowed_root_list


def test_each_inclusion_outside_is_named():
    items = [PathItem("folder", "/srv/data/a/"), PathItem("file", "/etc/passwd")]
    with pytest.raises(InvalidInput) as refused:
        require_in_roots(items, HostRoots(ROOTS, (), FALLBACK))
    assert refused.value.errors == [
        "Inclusion '/etc/passwd' lies outside the allowed roots "
        "(/srv/data, /home; CLOUDBACKUP_ALLOWED_ROOTS)."
    ]


def test_the_api_refuses_configurations_outside_the_roots(settings, db):
    confined = msgspec.structs.replace(settings, allowed_roots="/srv/data:/home")
    app = create_app(confined, database=db, dispatcher=_Null())
    with TestClient(app=app) as client:
        secret = token(db)
        agent = register_agent(client, secret)
        url = f"/v2/{PROJECT}/configurations"
        outside = client.post(
            url,
            json=configuration_body(agent["id"], ["/srv/data/", "/etc/"]),
            headers=headers(secret),
        )
        assert outside.status_code == 400
        assert outside.json()["errors"] == [
            "Inclusion '/etc/' lies outside the allowed roots "
            "(/srv/data, /home; CLOUDBACKUP_ALLOWED_ROOTS)."
        ]
        inside = client.post(
            url, json=configuration_body(agent["id"], ["/srv/data/"]), headers=headers(secret)
        )
        assert inside.status_code == 201
        moved = client.patch(
            f"{url}/{inside.json()['id']}",
            json=[
                {
                    "op": "replace",
                    "path": "/inclusions",
                    "value": [{"type": "folder", "path": "/root/"}],
                }
            ],
            headers={**headers(secret), "Content-Type": "application/json-patch+json"},
        )
        assert moved.status_code == 400
        shown = client.get(f"{url}/{inside.json()['id']}", headers=headers(secret)).json()
        assert shown["inclusions"] == [{"type": "folder", "path": "/srv/data/"}]


def test_the_worker_does_not_follow_a_symlink_out_of_the_roots(db, settings, tmp_path):
    allowed = tmp_path / "allowed"
    secret_dir = tmp_path / "secret"
    (allowed / "site").mkdir(parents=True)
    secret_dir.mkdir()
    (allowed / "site" / "index.html").write_text("public")
    (secret_dir / "shadow").write_text("TOP-SECRET-CONTENT")
    os.symlink(secret_dir, allowed / "escape")
    confined = msgspec.structs.replace(settings, allowed_roots=str(allowed))
    agent = rows.agent(db)
    config = rows.configuration(
        db,
        agent,
        inclusions=[
            {"type": "folder", "path": f"{allowed}/site/"},
            {"type": "file", "path": f"{allowed}/escape/shadow"},  # through the link: refused
            {"type": "folder", "path": f"{allowed}/escape/"},  # the link itself: kept as a link
        ],
    )
    backup = BackupService(db).start(agent.project_id, config.id, "start_requested", None)

    assert execute_backup(db, confined, backup.id) == "completed_with_errors"
    with db.transaction() as session:
        row = session.execute(sa.select(Backup).where(Backup.id == backup.id)).scalar_one()
        errors = (
            session.execute(sa.select(BackupError).where(BackupError.backup_id == backup.id))
            .scalars()
            .all()
        )
    assert [(e.path, e.type, e.exception_code) for e in errors] == [
        (f"{allowed}/escape/shadow", "file_unreadable", 13)
    ]
    assert "outside the allowed roots" in errors[0].exception_description
    entries = {
        os.fsdecode(entry.path): entry
        for entry in open_vault(confined, row.vault_id).read_manifest(row.snapshot_id).entries
    }
    assert f"{allowed}/site/index.html" in entries
    assert entries[f"{allowed}/escape"].kind == "symlink"  # recorded, never followed
    assert not any(path.startswith(str(secret_dir)) for path in entries)
    assert f"{allowed}/escape/shadow" not in entries


def test_restore_destinations_and_host_browsing_stay_in_the_roots(settings, db, tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    confined = msgspec.structs.replace(settings, allowed_roots=str(allowed))
    app = create_app(confined, database=db, dispatcher=_Null())
    source = rows.agent(db)
    backup = rows.backup(db, rows.configuration(db, source).id, snapshot_id=1, restorable=True)
    with TestClient(app=app) as client:
        secret = token(db)
        restore = client.post(
            f"/v2/{PROJECT}/restores",
            json={
                "backup_id": backup.id,
                "destination_agent_id": source.id,
                "destination_path": "/etc/",
                "overwrite_files": False,
                "encrypted_password_hex": None,
                "inclusions": [],
                "exclusions": [],
            },
            headers=headers(secret),
        )
        browse = client.post(
            f"/v2/{PROJECT}/agents/{source.id}/browse-requests",
            json={"path": "/etc/", "path_encoded": None},
            headers=headers(secret),
        )
    assert restore.status_code == 400
    assert restore.json()["errors"] == [
        f"destination_path '/etc/' lies outside the allowed roots ({allowed}; {FALLBACK})."
    ]
    assert browse.status_code == 400
    assert browse.json()["errors"] == [
        f"path '/etc/' lies outside the allowed roots ({allowed}; {FALLBACK})."
    ]
    with db.transaction() as session:
        assert session.execute(sa.select(Restore)).first() is None
        assert session.execute(sa.select(BrowseRequest)).first() is None


def test_the_worker_restores_nothing_through_a_link_out_of_the_roots(settings, db, tmp_path):
    data, allowed, secret_dir = tmp_path / "data", tmp_path / "allowed", tmp_path / "secret"
    (data / "site").mkdir(parents=True)
    (data / "site" / "index.html").write_text("public")
    allowed.mkdir()
    secret_dir.mkdir()
    (allowed / "escape").mkdir()
    agent, _, backup = backed_up(db, settings, data)
    confined = msgspec.structs.replace(settings, allowed_roots=str(allowed))
    request = RestoreRequest(
        backup_id=backup.id,
        destination_agent_id=agent.id,
        destination_path=f"{allowed}/escape/restored/",  # written inside, leads outside
        overwrite_files=False,
        encrypted_password_hex=None,
        inclusions=(),
        exclusions=(),
    )
    restore = RestoreService(db, _Null(), RootsPolicy.from_settings(confined)).start(
        agent.project_id, request
    )

    # The API judged a plain folder; by the time the worker runs it is a link leading out.
    (allowed / "escape").rmdir()
    os.symlink(secret_dir, allowed / "escape")

    assert execute_restore(db, confined, restore.id) == "failed"
    with db.transaction() as session:
        row = session.execute(sa.select(Restore).where(Restore.id == restore.id)).scalar_one()
    assert row.errors_diagnostics == (
        f"Nothing restored: destination_path '{allowed}/escape/restored/' lies outside the "
        f"allowed roots (it leads to {secret_dir}/restored) ({allowed}; {FALLBACK})."
    )
    assert list(secret_dir.iterdir()) == []


def test_the_worker_does_not_list_a_host_folder_through_a_link_out_of_the_roots(
    settings, db, tmp_path
):
    allowed, secret_dir = tmp_path / "allowed", tmp_path / "secret"
    allowed.mkdir()
    secret_dir.mkdir()
    (secret_dir / "shadow").write_text("x")
    (allowed / "escape").mkdir()
    confined = msgspec.structs.replace(settings, allowed_roots=str(allowed))
    agent = rows.agent(db)
    service = BrowseService(db, _Null(), confined)
    listed = service.ask_host(
        agent.project_id, agent.id, BrowseAsk(path=f"{allowed}/", path_encoded=None)
    )
    escaped = service.ask_host(
        agent.project_id, agent.id, BrowseAsk(path=f"{allowed}/escape/", path_encoded=None)
    )
    # The API judged a plain folder; by the time the worker answers it is a link leading out.
    (allowed / "escape").rmdir()
    os.symlink(secret_dir, allowed / "escape")

    answer_browse(db, confined, listed)
    answer_browse(db, confined, escaped)

    with db.transaction() as session:
        answers = {row.id: row for row in session.execute(sa.select(BrowseRequest)).scalars()}
    assert answers[listed].succeeded is True
    assert answers[escaped].succeeded is False and answers[escaped].items == []


def test_confine_keeps_nothing_without_roots_and_everything_under_slash():
    items = [{"type": "folder", "path": "/etc/"}]
    kept, refused, _ = confine(items, HostRoots((), (), FALLBACK))
    assert kept == [] and [error.path for error in refused] == ["/etc/"]
    assert confine(items, HostRoots(("/",), (), FALLBACK)) == (items, [], [])


class _Null:
    def publish(self, kind: str, resource_id: str, *, agent_id: str | None = None) -> bool:
        return True
