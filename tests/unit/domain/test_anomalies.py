"""The ransomware guard's detector on real backups (SQLite, the real engine and vault): an
everyday change raises nothing, a tree mostly rewritten as random bytes raises an anomaly with
its event and mail; and the decision rule itself at its edges."""

from __future__ import annotations

import random

import msgspec
import sqlalchemy as sa

from cloudbackup.domain.anomalies import Measures, Thresholds, is_anomalous
from cloudbackup.domain.backup_run import execute_backup
from cloudbackup.domain.backups import BackupService
from cloudbackup.engine import BackupResult
from cloudbackup.settings import load_settings
from cloudbackup.store.mail_outbox import MailOutbox
from cloudbackup.store.tables import Anomaly, Backup, BackupChange, Configuration, Event
from factories.runs import Recorder, backed_up
from factories.trees import make_text_tree, rewrite_random

RECIPIENT = "oncall@example.com"


def _again(db, settings, config: Configuration) -> Backup:
    started = BackupService(db, Recorder()).start(
        config.project_id, config.id, "start_requested", None
    )
    assert execute_backup(db, settings, started.id) == "completed"
    with db.transaction() as session:
        return session.execute(sa.select(Backup).where(Backup.id == started.id)).scalar_one()


def _all(db, model, **equal):
    with db.transaction() as session:
        query = sa.select(model).filter_by(**equal)
        return list(session.execute(query).scalars())


def _first_backup(db, settings, tmp_path, files=100):
    paths = make_text_tree(tmp_path / "src", files=files)
    notify = [{"type": "email", "destination": RECIPIENT, "on_success": False, "on_failure": True}]
    _, config, first = backed_up(db, settings, tmp_path / "src", notifications=notify)
    return paths, config, first


def test_an_everyday_change_of_five_percent_raises_no_anomaly(db, settings, tmp_path):
    paths, config, first = _first_backup(db, settings, tmp_path)
    rng = random.Random(1)
    for path in paths[:5]:
        path.write_text(path.read_text() + f" edited {rng.randint(0, 9999)}")
    second = _again(db, settings, config)

    assert _all(db, Anomaly) == []
    change = _all(db, BackupChange, backup_id=second.id)[0]
    assert (change.previous_files, change.files_changed, change.files_deleted) == (100, 5, 0)
    assert 0 < change.new_stored_bytes < change.new_plain_bytes  # text compresses
    assert _all(db, BackupChange, backup_id=first.id)[0].previous_files == 0


def test_eighty_percent_replaced_by_random_bytes_raises_an_anomaly(db, settings, tmp_path):
    mail = msgspec.structs.replace(settings, smtp_url="smtp://127.0.0.1:1")
    paths, config, _ = _first_backup(db, mail, tmp_path)
    rewrite_random(paths[:80])
    second = _again(db, mail, config)

    [anomaly] = _all(db, Anomaly)
    assert (anomaly.backup_id, anomaly.configuration_id, anomaly.state) == (
        second.id,
        config.id,
        "open",
    )
    assert (anomaly.files_compared, anomaly.files_changed, anomaly.files_deleted) == (100, 80, 0)
    assert anomaly.changed_ratio == 0.8 and anomaly.deleted_ratio == 0.0
    assert anomaly.compressed_size_ratio > 0.99  # random bytes do not compress
    assert anomaly.history_compressed_size_ratio is not None
    assert anomaly.history_compressed_size_ratio < 0.6  # the first backup's text did
    [event] = _all(db, Event, event="backup_anomaly")
    assert event.backup_id == second.id and event.configuration_id == config.id
    assert event.members["anomaly"]["id"] == anomaly.id
    with db.transaction() as session:
        [message] = MailOutbox(session).messages(config.project_id)
    assert message.recipient == RECIPIENT and message.source == f"anomaly:{anomaly.id}"
    assert "80 of 100" in message.body and "ransomware" in message.subject.lower()


def test_encrypted_copies_beside_deleted_originals_raise_an_anomaly(db, settings, tmp_path):
    """The other way ransomware leaves a tree: ``x.locked`` written, ``x`` deleted."""
    paths, config, _ = _first_backup(db, settings, tmp_path)
    rng = random.Random(2)
    for path in paths[:70]:
        path.with_suffix(".locked").write_bytes(rng.randbytes(path.stat().st_size))
        path.unlink()
    _again(db, settings, config)

    [anomaly] = _all(db, Anomaly)
    assert (anomaly.files_changed, anomaly.files_deleted) == (0, 70)
    assert anomaly.deleted_ratio == 0.7


def test_no_mail_is_queued_without_a_mail_server(db, settings, tmp_path):
    paths, config, _ = _first_backup(db, settings, tmp_path)
    rewrite_random(paths[:80])
    _again(db, settings, config)
    assert len(_all(db, Anomaly)) == 1
    with db.transaction() as session:
        assert MailOutbox(session).messages() == []


def _measures(**overrides) -> Measures:
    base = {
        "previous_files": 100,
        "files_changed": 80,
        "files_deleted": 0,
        "new_plain_bytes": 1_000_000,
        "new_stored_bytes": 1_000_500,
        "history_plain_bytes": 4_000_000,
        "history_stored_bytes": 1_200_000,
    }
    return Measures(**(base | overrides))


def test_the_rule_needs_every_signal():
    t = Thresholds()
    assert is_anomalous(_measures(), t)
    # Few files changed, or the new data still compresses: an everyday change.
    assert not is_anomalous(_measures(files_changed=49), t)
    assert is_anomalous(_measures(files_changed=30, files_deleted=20), t)
    assert not is_anomalous(_measures(new_stored_bytes=600_000), t)
    # A tree too small to judge, and a backup that stored nothing new.
    assert not is_anomalous(_measures(previous_files=19, files_changed=19), t)
    assert not is_anomalous(_measures(new_plain_bytes=0, new_stored_bytes=0), t)
    # No history yet: the absolute floor alone decides.
    assert is_anomalous(_measures(history_plain_bytes=0, history_stored_bytes=0), t)


def test_measures_are_the_result_s_change_and_the_history_and_record_the_change():
    result = BackupResult(
        snapshot_id=3,
        files_searched=120,
        bytes_searched=9_000_000,
        files_backed_up=80,
        bytes_backed_up=1_000_500,
        bytes_in_db=4_096,
        errors=[],
        duration_seconds=2.5,
        previous_files=100,
        files_changed=80,
        files_deleted=0,
        new_plain_bytes=1_000_000,
        new_stored_bytes=1_000_500,
    )
    measures = Measures.of(result, (4_000_000, 1_200_000))
    assert measures == _measures()
    assert measures.change() == {
        "previous_files": 100,
        "files_changed": 80,
        "files_deleted": 0,
        "new_plain_bytes": 1_000_000,
        "new_stored_bytes": 1_000_500,
    }


def test_a_tree_that_never_compressed_needs_the_rise_set_to_zero():
    photos = _measures(history_stored_bytes=3_990_000)  # history at 0.9975
    assert not is_anomalous(photos, Thresholds())
    assert is_anomalous(photos, Thresholds(compression_rise=0.0))


def test_thresholds_come_from_the_environment(settings):
    tuned = load_settings(
        {
            "CLOUDBACKUP_ANOMALY_CHANGED_RATIO": "0.3",
            "CLOUDBACKUP_ANOMALY_COMPRESSED_SIZE_RATIO": "0.8",
            "CLOUDBACKUP_ANOMALY_COMPRESSION_RISE": "0.05",
            "CLOUDBACKUP_ANOMALY_MIN_FILES": "5",
        }
    )
    assert Thresholds.of(tuned) == Thresholds(0.3, 0.8, 0.05, 5)
    assert Thresholds.of(settings) == Thresholds()


def test_a_guard_that_fails_leaves_the_backup_completed(db, settings, tmp_path, caplog):
    paths, config, _ = _first_backup(db, settings, tmp_path)
    rewrite_random(paths[:80])
    with db.transaction() as session:
        session.execute(sa.text("DROP TABLE backup_changes"))  # the guard's write now fails
    second = _again(db, settings, config)  # asserts the outcome is still `completed`
    assert second.state == "completed" and second.restorable
    assert "ransomware guard could not check backup" in caplog.text
