"""Settings find the broker `cloudbackup dev` recorded in the data folder, unless one is set."""

from __future__ import annotations

from cloudbackup.settings import DEV_BROKER_FILE, load_settings


def test_the_recorded_dev_broker_is_used_only_when_none_is_set(tmp_path, monkeypatch):
    (tmp_path / DEV_BROKER_FILE).write_text("redis://127.0.0.1:7777/0\n")
    assert load_settings({"CLOUDBACKUP_DATA_DIR": str(tmp_path)}).broker_url == (
        "redis://127.0.0.1:7777/0"
    )
    given = {"CLOUDBACKUP_DATA_DIR": str(tmp_path), "CLOUDBACKUP_BROKER_URL": "redis://h:1/0"}
    assert load_settings(given).broker_url == "redis://h:1/0"
    monkeypatch.chdir(tmp_path)  # the default data folder, with nothing recorded in it
    assert load_settings({}).broker_url == ""
