"""CLOUDBACKUP_ALLOWED_ROOTS: inclusions must lie in the allowed roots (the API refuses others),
and the worker refuses an inclusion that leads out of them through a symbolic link."""

from __future__ import annotations

import os

import msgspec
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from cloudbackup.api.app import create_app
from cloudbackup.domain.backup_run import confine, execute_backup
from cloudbackup.domain.backups import BackupService
from cloudbackup.domain.configurations import PathItem, check_roots, outside_roots
from cloudbackup.engine import open_vault
from cloudbackup.settings import load_settings
from cloudbackup.store.tables import Backup, BackupError
from factories import rows
from factories.api import PROJECT, configuration_body, headers, register_agent, token

ROOTS = ("/srv/data", "/home")


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


def test_no_roots_means_anywhere_and_a_root_of_slash_allows_everything():
    assert outside_roots("/etc/shadow", ()) is False
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
    assert check_roots(items, ROOTS) == [
        "Inclusion '/etc/passwd' lies outside the allowed roots (/srv/data, /home)."
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
            "Inclusion '/etc/' lies outside the allowed roots (/srv/data, /home)."
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


def test_confine_keeps_everything_without_roots(tmp_path):
    items = [{"type": "folder", "path": "/etc/"}]
    assert confine(items, ()) == (items, [])


class _Null:
    def publish(self, kind: str, resource_id: str, *, agent_id: str | None = None) -> bool:
        return True
