"""The `cloudbackup` client commands against the real API (Litestar TestClient as transport)."""

from __future__ import annotations

import _thread
import json
import stat
import threading
import time

import sqlalchemy as sa
from typer.testing import CliRunner

from cloudbackup.cli import app
from cloudbackup.client import format as fmt
from cloudbackup.store.tables import Backup, BackupError
from factories import rows
from factories.api import PROJECT, headers, register_agent, token
from factories.cli import BASE
from factories.trees import digests, make_tree


def _config(cli, *extra: str) -> str:
    result = cli(
        "configs",
        "create",
        "--name",
        "docs",
        "--include",
        "/srv/docs",
        "--email",
        "me@example.com",
        "--json",
        *extra,
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["id"]


# -- configurations -----------------------------------------------------------------------------
def test_configs_create_show_list_edit_delete_from_flags(cli, agent, client, secret):
    created = cli(
        "configs",
        "create",
        "--name",
        "docs",
        "--agent",
        "laptop",
        "--include",
        "/srv/docs",
        "--include",
        "file:/etc/hosts",
        "--exclude",
        "/srv/docs/tmp",
        "--schedule",
        "daily 02:30",
        "--time-zone",
        "Europe/Paris",
        "--retention-days",
        "7",
        "--email",
        "me@example.com",
    )
    assert created.exit_code == 0, created.output
    assert "created configuration" in created.stdout
    assert "daily at 02:30 (Europe/Paris)" in created.stdout
    [config] = client.get(f"/v2/{PROJECT}/configurations", headers=headers(secret)).json()[
        "configurations"
    ]
    body = client.get(
        f"/v2/{PROJECT}/configurations/{config['id']}", headers=headers(secret)
    ).json()
    assert body["agent"]["id"] == agent["id"]
    assert body["inclusions"] == [
        {"type": "folder", "path": "/srv/docs/"},
        {"type": "file", "path": "/etc/hosts"},
    ]
    assert body["exclusions"] == [{"type": "folder", "path": "/srv/docs/tmp/"}]
    assert body["schedule"]["recurrence"] == ["RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=2;BYMINUTE=30"]
    assert body["retention"] == {"days": 7}
    assert body["notifications"] == [
        {"type": "email", "destination": "me@example.com", "on_success": False, "on_failure": True}
    ]

    listed = cli("configs", "list")
    assert listed.exit_code == 0 and "docs" in listed.stdout and config["id"] in listed.stdout
    shown = cli("configs", "show", "docs")
    assert "file:/etc/hosts" in shown.stdout and "/srv/docs/tmp/" in shown.stdout

    edited = cli(
        "configs",
        "edit",
        "docs",
        "--disable",
        "--schedule",
        "weekly mon,thu 14:00",
        "--name",
        "documents",
        "--no-exclusions",
    )
    assert edited.exit_code == 0, edited.output
    body = client.get(
        f"/v2/{PROJECT}/configurations/{config['id']}", headers=headers(secret)
    ).json()
    assert body["enabled"] is False and body["name"] == "documents" and body["exclusions"] == []
    assert body["schedule"] == {
        "start": body["schedule"]["start"],
        "recurrence": ["RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=MO,TH;BYHOUR=14;BYMINUTE=0"],
        "time_zone": "Europe/Paris",
    }
    assert "weekly on Mon,Thu at 14:00 (Europe/Paris)" in edited.stdout

    refused = cli("configs", "delete", "documents", input="n\n")
    assert refused.exit_code == 2 and "nothing deleted" in refused.output
    deleted = cli("configs", "delete", "documents", "--yes")
    assert deleted.exit_code == 0, deleted.output
    body = client.get(
        f"/v2/{PROJECT}/configurations/{config['id']}", headers=headers(secret)
    ).json()
    assert body["deleted"] is True


def test_configs_create_from_a_yaml_file_with_flags_overriding_it(
    cli, agent, client, secret, tmp_path
):
    document = tmp_path / "config.yaml"
    document.write_text(
        "name: from yaml\n"
        "enabled: true\n"
        "schedule: {recurrence: ['RRULE:FREQ=HOURLY;INTERVAL=6'], time_zone: UTC}\n"
        "retention: {days: 3}\n"
        "inclusions: [{type: folder, path: /var/www/}]\n"
        "exclusions: [{type: folder, path: /var/www/cache/}]\n"
        "notifications: [{type: email, destination: ops@example.com, on_success: true, on_failure: true}]\n"
    )
    result = cli("configs", "create", "--file", str(document), "--name", "web", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["name"] == "web"  # the flag wins over the file
    assert body["agent"]["id"] == agent["id"]  # the only agent, as no --agent was given
    assert body["schedule"]["recurrence"] == ["RRULE:FREQ=HOURLY;INTERVAL=6"]
    assert body["retention"] == {"days": 3}
    assert body["exclusions"] == [{"type": "folder", "path": "/var/www/cache/"}]
    assert body["notifications"][0]["on_success"] is True

    document.write_text("- not\n- a mapping\n")
    bad = cli("configs", "create", "--file", str(document))
    assert bad.exit_code == 2 and "must hold one object" in bad.output
    json_file = tmp_path / "config.json"
    json_file.write_text("{not json")
    bad = cli("configs", "create", "--file", str(json_file))
    assert bad.exit_code == 2 and "is not valid JSON" in bad.output


# -- errors -------------------------------------------------------------------------------------
def test_api_errors_are_one_line_with_the_status_and_change_nothing(cli, agent, client, db, secret):
    bad = cli("configs", "create", "--name", "x", "--include", "relative/path", "--email", "nope")
    assert bad.exit_code == 4
    [line] = bad.stderr.strip().splitlines()
    assert line.startswith("error: HTTP 400: Validation failed. (")
    assert "Inclusion 'relative/path/': the path must be absolute" in line
    assert "'nope' is not an e-mail address" in line
    assert client.get(f"/v2/{PROJECT}/configurations", headers=headers(secret)).json() == {
        "configurations": []
    }

    missing = cli("backups", "show", "0d95d699-d16b-11e4-93bd-c8e0eb190e3d")
    assert missing.exit_code == 4
    assert missing.stderr.strip() == "error: HTTP 404: Backup not found."

    wrong = cli("agents", "list", CLOUDBACKUP_TOKEN="0f6e9f63600142f0a970911583522217")
    assert wrong.exit_code == 4
    assert (
        wrong.stderr.strip() == "error: HTTP 401: The X-Auth-Token is invalid, expired or revoked."
    )

    config_id = _config(cli)
    observer = cli(
        "configs", "delete", config_id, "--yes", CLOUDBACKUP_TOKEN=token(db, role="observer")
    )
    assert observer.exit_code == 4
    assert observer.stderr.startswith("error: HTTP 403: Your role does not allow this operation")
    assert cli("configs", "show", config_id, "--json").stdout.count('"deleted": false') == 1

    other = cli("agents", "list", CLOUDBACKUP_PROJECT="220022")
    assert other.exit_code == 4 and "HTTP 404: Not found. - check the project id" in other.stderr

    unknown = cli("backup", "start", "no such config")
    assert unknown.exit_code == 2
    assert unknown.stderr.strip() == "error: no configuration with id or name 'no such config'"


def test_missing_settings_and_an_unreachable_server_are_clear(tmp_path):
    env = {
        "CLOUDBACKUP_CLIENT_CONFIG": str(tmp_path / "none.toml"),
        "CLOUDBACKUP_TOKEN": "",
        "CLOUDBACKUP_PROJECT": "",
        "CLOUDBACKUP_URL": "",
    }
    result = CliRunner().invoke(app, ["agents", "list"], env=env)
    assert result.exit_code == 2
    assert "missing a token (--token or CLOUDBACKUP_TOKEN) and a project id" in result.stderr
    assert "cloudbackup login" in result.stderr

    result = CliRunner().invoke(
        app,
        ["agents", "list", "--url", "http://127.0.0.1:9", "--token", "t", "--project", "p"],
        env=env,
    )
    assert result.exit_code == 4
    assert result.stderr.startswith("error: cannot reach http://127.0.0.1:9")
    assert "Traceback" not in result.output


def test_login_checks_and_saves_a_private_config_file(client, secret, tmp_path):
    env = {"CLOUDBACKUP_CLIENT_CONFIG": str(tmp_path / "cfg" / "client.toml"), "COLUMNS": "200"}
    for key in ("CLOUDBACKUP_URL", "CLOUDBACKUP_TOKEN", "CLOUDBACKUP_PROJECT"):
        env[key] = ""
    bad = CliRunner().invoke(
        app,
        ["login", "--url", BASE, "--project", PROJECT, "--token", "wrong"],
        obj={"http": client},
        env=env,
    )
    assert bad.exit_code == 4 and "HTTP 401" in bad.stderr
    assert not (tmp_path / "cfg" / "client.toml").exists()

    good = CliRunner().invoke(
        app, ["login"], input=f"{BASE}\n{PROJECT}\n{secret}\n", obj={"http": client}, env=env
    )
    assert good.exit_code == 0, good.output
    path = tmp_path / "cfg" / "client.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == f'url = "{BASE}"\ntoken = "{secret}"\nproject = "{PROJECT}"\n'
    assert secret not in good.stdout  # typed hidden, never echoed

    register_agent(client, secret, name="saved")
    listed = CliRunner().invoke(app, ["agents", "list"], obj={"http": client}, env=env)
    assert listed.exit_code == 0 and "saved" in listed.stdout
    flag = CliRunner().invoke(
        app, ["agents", "list", "--token", "x"], obj={"http": client}, env=env
    )
    assert flag.exit_code == 4  # a flag beats the file


# -- agents, backups, events ------------------------------------------------------------------------
def test_agents_list_and_show_as_tables_and_json(cli, agent):
    listed = cli("agents", "list")
    assert listed.exit_code == 0
    assert (
        agent["id"] in listed.stdout
        and "laptop" in listed.stdout
        and "Ubuntu 14.04" in listed.stdout
    )
    as_json = json.loads(cli("agents", "list", "--json").stdout)
    assert [a["id"] for a in as_json["agents"]] == [agent["id"]]
    shown = cli("agents", "show", "laptop")
    assert shown.exit_code == 0 and f"{agent['vault']['id']} (created)" in shown.stdout
    assert json.loads(cli("agents", "show", agent["id"], "--json").stdout)["name"] == "laptop"


def test_backups_list_filters_states_on_the_client_and_shows_errors(cli, agent, db, secret):
    config_id = _config(cli)
    failed = rows.backup(
        db,
        config_id,
        state="failed",
        errors_count=0,
        errors_reason="backup_failed",
        errors_diagnostics="OSError: disk full",
    )
    done = rows.backup(
        db,
        config_id,
        state="completed",
        files_searched=3,
        files_backed_up=2,
        bytes_backed_up=2048,
        restorable=True,
    )
    partial = rows.backup(db, config_id, state="completed_with_errors", errors_count=1)
    with db.transaction() as session:
        session.add(
            BackupError(
                backup_id=partial.id,
                index=0,
                path="/srv/docs/gone.txt",
                type="file_or_folder_missing",
            )
        )

    listed = cli("backups", "list")
    assert listed.exit_code == 0
    assert all(b.id in listed.stdout for b in (failed, done, partial))
    only = json.loads(cli("backups", "list", "--state", "failed,completed", "--json").stdout)
    assert {b["id"] for b in only["backups"]} == {failed.id, done.id}
    assert (
        json.loads(cli("backups", "list", "-n", "1", "--json").stdout)["backups"][0]["id"]
        == partial.id
    )
    bad = cli("backups", "list", "--state", "finished")
    assert bad.exit_code == 2 and "unknown state(s) finished" in bad.stderr

    shown = cli("backup", "show", done.id)
    assert "2 files, 2.0 KiB" in shown.stdout and "restorable     yes" in shown.stdout
    errors = cli("backup", "errors", partial.id)
    assert errors.exit_code == 0
    assert "file_or_folder_missing" in errors.stdout and "/srv/docs/gone.txt" in errors.stdout
    assert "no errors" in cli("backup", "errors", done.id).stdout


def test_start_and_stop_without_waiting(cli, agent, client, secret):
    config_id = _config(cli)
    started = cli("backup", "start", "docs", "--json")
    assert started.exit_code == 0
    backup = json.loads(started.stdout)
    assert backup["state"] == "start_requested" and backup["configuration"]["id"] == config_id
    again = cli("backup", "start", "docs")
    assert again.exit_code == 4
    assert "HTTP 409: A backup of this configuration is already in progress" in again.stderr
    stopped = cli("backup", "stop", backup["id"])
    assert stopped.exit_code == 0
    assert stopped.stdout.strip() == f"stop requested; backup {backup['id']} is stopped"


def test_events_of_a_backup_and_of_the_project(cli, agent):
    _config(cli)
    backup = json.loads(cli("backup", "start", "docs", "--json").stdout)
    cli("backup", "stop", backup["id"])
    shown = cli("events", "--backup", backup["id"])
    assert shown.exit_code == 0
    names = [line.split()[3] for line in shown.stdout.strip().splitlines()]
    assert names == ["backup_start_request", "backup_stop_request", "backup_stopped"]
    lines = cli("events", "--backup", backup["id"], "--json", "-n", "2").stdout.strip().splitlines()
    assert [json.loads(line)["event"] for line in lines] == [
        "backup_stop_request",
        "backup_stopped",
    ]
    project = cli("events", "--json")
    assert project.exit_code == 0, project.output
    assert "backup_stopped" in project.stdout
    both = cli("events", "--backup", backup["id"], "--agent", "laptop")
    assert both.exit_code == 2


def test_events_follow_prints_new_events_until_ctrl_c(cli, agent, client, secret):
    config_id = _config(cli)

    def later() -> None:
        time.sleep(0.6)
        client.post(
            f"/v2/{PROJECT}/backups",
            json={"configuration_id": config_id, "state": "start_requested"},
            headers=headers(secret),
        )
        time.sleep(0.8)
        _thread.interrupt_main()  # what Ctrl-C does

    threading.Thread(target=later, daemon=True).start()
    result = cli("events", "--follow", "--interval", "0.2", "-n", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1].split()[3] == "backup_start_request"


# -- --wait: a real run in a thread (factories.workers.ThreadWorker) -----------------------------
def _tree_config(cli, http, secret, root, *extra_inclusions):
    agent = register_agent(http, secret, name="box")
    args = ["--include", f"{root}/", "--exclude", f"{root}/cache/"]
    for path in extra_inclusions:
        args += ["--include", path]
    result = cli(
        "configs",
        "create",
        "--name",
        "tree",
        "--agent",
        agent["id"],
        "--email",
        "me@example.com",
        "--json",
        *args,
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["id"]


def test_wait_follows_a_run_to_completed_and_exits_0(running, tmp_path):
    cli, http, secret, _ = running()
    tree = make_tree(tmp_path / "src", files=20, size=4000)
    _tree_config(cli, http, secret, tree.root)

    result = cli("backup", "start", "tree", "--wait", "--interval", "0.05")
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("backup ") and lines[0].endswith("started; Ctrl-C to stop it")
    states = [line.split(":")[0] for line in lines[1:]]
    assert states[0] in ("start_requested", "queued", "preparing", "in_progress")
    assert states[-1] == "completed"
    assert lines[-1] == (
        f"completed: {tree.files} files ({fmt.size(tree.bytes)}) searched, "
        f"{tree.unique_files} files ({fmt.size(tree.unique_bytes)}) stored"
    )
    assert "completed in" in result.stdout
    assert f"{tree.files} files ({fmt.size(tree.bytes)}) searched" in result.stdout

    as_json = cli("backup", "start", "tree", "--wait", "--interval", "0.05", "--json")
    assert as_json.exit_code == 0
    body = json.loads(as_json.stdout)
    assert body["state"] == "completed" and body["files_backed_up"] == 0  # nothing new


def test_wait_exits_3_and_lists_the_errors_when_completed_with_errors(running, tmp_path):
    cli, http, secret, _ = running()
    tree = make_tree(tmp_path / "src", files=5, size=1000)
    _tree_config(cli, http, secret, tree.root, f"{tmp_path}/gone/")

    result = cli("backup", "start", "tree", "--wait", "--interval", "0.05")
    assert result.exit_code == 3, result.output
    assert "completed_with_errors in" in result.stdout
    assert "Some files could not be backed up. Partial list follows." in result.stdout
    assert "inclusion_missing" in result.stdout and f"{tmp_path}/gone" in result.stdout


def test_wait_exits_1_when_the_run_fails(running, tmp_path, settings):
    cli, http, secret, _ = running()
    tree = make_tree(tmp_path / "src", files=3, size=100)
    _tree_config(cli, http, secret, tree.root)
    # A regular file where the vault folder must go: the run cannot store anything.
    settings.resolved_vault_path.parent.mkdir(parents=True, exist_ok=True)
    settings.resolved_vault_path.write_bytes(b"not a folder")

    result = cli("backup", "start", "tree", "--wait", "--interval", "0.05")
    assert result.exit_code == 1, result.output
    assert "failed in" in result.stdout
    assert "failed: backup_failed" in result.stdout


def _interrupt_when(db, state: str) -> threading.Thread:
    """Press Ctrl-C (interrupt the main thread) once some backup reaches ``state``."""

    def watch() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with db.transaction() as session:
                states = set(session.execute(sa.select(Backup.state)).scalars())
            if state in states:
                _thread.interrupt_main()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_ctrl_c_offers_to_stop_and_yes_stops_the_run(running, tmp_path, db):
    cli, http, secret, worker = running(max_bps=2 * 1024 * 1024)
    tree = make_tree(tmp_path / "src", files=4, size=10, big_files=2, big_size=3 * 1024 * 1024)
    _tree_config(cli, http, secret, tree.root)

    _interrupt_when(db, "in_progress")
    result = cli("backup", "start", "tree", "--wait", "--interval", "0.05", input="y\n")
    assert result.exit_code == 1, result.output
    assert "Stop backup " in result.stderr and "stop requested; waiting for backup" in result.stderr
    assert "stopped in" in result.stdout
    worker.join()
    assert list(worker.results.values()) == ["stopped"]


def test_ctrl_c_then_no_leaves_the_run_going_and_exits_130(running, tmp_path, db):
    cli, http, secret, worker = running(max_bps=4 * 1024 * 1024)
    tree = make_tree(tmp_path / "src", files=4, size=10, big_files=1, big_size=3 * 1024 * 1024)
    _tree_config(cli, http, secret, tree.root)

    _interrupt_when(db, "in_progress")
    result = cli("backup", "start", "tree", "--wait", "--interval", "0.05", input="n\n")
    assert result.exit_code == 130, result.output
    backup_id = result.stderr.split()[1]
    assert f"keeps running; follow it with `cloudbackup backups wait {backup_id}`" in result.stderr
    waited = cli("backups", "wait", backup_id, "--interval", "0.05")
    assert waited.exit_code == 0, waited.output
    assert list(worker.results.values()) == ["completed"]


# -- restores ----------------------------------------------------------------------------------------
def test_restore_a_backup_with_the_cli_and_follow_it(running, tmp_path):
    cli, http, secret, _worker = running()
    tree = make_tree(tmp_path / "src", files=12, size=3000)
    _tree_config(cli, http, secret, tree.root)
    backup = json.loads(
        cli("backup", "start", "tree", "--wait", "--json", "--interval", "0.05").stdout
    )
    assert backup["state"] == "completed"

    both = cli("restores", "start", backup["id"], "--to", str(tmp_path / "x"), "--original")
    assert both.exit_code == 2 and "--to FOLDER, or --original" in both.stderr
    unknown = cli("restores", "start", "0d95d699-d16b-11e4-93bd-c8e0eb190e3d", "--to", "/tmp/x")
    assert unknown.exit_code == 4 and "HTTP 404: Backup not found." in unknown.stderr

    out = tmp_path / "out"
    result = cli(
        "restores", "start", backup["id"], "--to", str(out), "--wait", "--interval", "0.05"
    )
    assert result.exit_code == 0, result.output
    assert "restore " in result.stdout and " completed in " in result.stdout
    expected = {k: v for k, v in digests(tree.root).items() if not k.startswith("cache")}
    assert digests(out / str(tree.root).lstrip("/")) == expected

    listed = cli("restores", "list")
    assert listed.exit_code == 0 and backup["id"][:8] in listed.stdout and str(out) in listed.stdout
    [restore] = json.loads(cli("restores", "list", "--json").stdout)["restores"]
    shown = cli("restores", "show", restore["id"])
    assert f"{tree.files} files" in shown.stdout and "completed" in shown.stdout
    assert cli("restores", "errors", restore["id"]).stdout.strip() == "no errors"
    events = cli("events", "--restore", restore["id"])
    assert events.exit_code == 0 and "restore_completed" in events.stdout
    finished = cli("restores", "stop", restore["id"])
    assert (
        finished.exit_code == 4
        and "HTTP 409: Modifying a restore that is already" in finished.stderr
    )


def test_agents_register_describes_this_machine_and_keeps_its_key_private(
    cli, client, secret, tmp_path
):
    result = cli(
        "agents",
        "register",
        "--name",
        "my laptop",
        "--region",
        "DFW",
        "--address",
        "10.0.0.5",
        "--json",
    )
    assert result.exit_code == 0, result.output
    agent = json.loads(result.stdout)
    assert agent["name"] == "my laptop" and agent["password"]
    shown = client.get(f"/v2/{PROJECT}/agents/{agent['id']}", headers=headers(secret)).json()
    assert shown["host"]["region"] == "DFW" and shown["host"]["addresses"] == [
        {"version": 4, "addr": "10.0.0.5"}
    ]
    assert shown["rsa_public_key"]["exponent"] == 10001  # 65537 in the spec's hex spelling
    assert len(shown["rsa_public_key"]["modulus"]) == 512  # 2048 bits
    key = tmp_path / f"agent-{agent['id']}.pem"
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    again = cli("agents", "register", "--flavor", "rackspace_dedicated")
    assert again.exit_code == 4 and again.stderr.startswith("error: HTTP 400: Validation failed.")
