"""The web console over the real API (TestClient): cookie login, CSRF, roles, forms, pages."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from cloudbackup.store.tables import CONSOLE_SESSIONS, utcnow
from factories import rows
from factories.api import PROJECT, headers, register_agent, token
from factories.trees import make_tree

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
SESSION_COOKIE = re.compile(r"cloudbackup_console=([^;]+);")


def log_in(client, secret: str) -> str:
    """The console cookie's value after logging in with an API token."""
    response = client.post("/console/login", data={"token": secret}, follow_redirects=False)
    assert response.status_code == 303, response.text
    client.cookies.clear()  # each Browser sends its own cookie
    return SESSION_COOKIE.match(response.headers["set-cookie"]).group(1)


class Browser:
    """Requests with the console cookie, as a browser on the same origin would send them."""

    def __init__(self, client, secret: str) -> None:
        self.client = client
        self.session = log_in(client, secret)
        self.cookie = {"Cookie": f"cloudbackup_console={self.session}"}
        self.origin = {"Origin": "http://testserver.local", "Sec-Fetch-Site": "same-origin"}

    def get(self, path: str, **kw):
        return self.client.get(path, headers=self.cookie, follow_redirects=False, **kw)

    def csrf(self, path: str = "/console/backups") -> str:
        page = self.get(path)
        assert page.status_code == 200, page.text
        return CSRF.search(page.text).group(1)

    def post(self, path: str, data: dict, *, csrf: bool = True, extra: dict | None = None):
        body = dict(data)
        if csrf:
            body["csrf_token"] = self.csrf()
        return self.client.post(
            path,
            data=body,
            headers={**self.cookie, **self.origin, **(extra or {})},
            follow_redirects=False,
        )


@pytest.fixture
def browser(client, secret):
    return Browser(client, secret)


@pytest.fixture
def config(db, agent):
    return rows.configuration(db, rows_agent(db, agent), name="docs")


def rows_agent(db, agent):
    from cloudbackup.store.tables import Agent

    with db.transaction() as session:
        row = session.get(Agent, agent["id"])
        session.expunge(row)
        return row


def _api(client, secret, path):
    response = client.get(f"/v2/{PROJECT}{path}", headers=headers(secret))
    assert response.status_code == 200, response.text
    return response.json()


# -- log in ---------------------------------------------------------------------------------------
def test_login_sets_a_secure_httponly_strict_session_cookie_that_is_not_the_token(client, secret):
    away = client.get("/console/backups", follow_redirects=False)
    assert away.status_code == 303
    assert away.headers["location"] == "/console/login?next=%2Fconsole%2Fbackups"

    form = client.get("/console/login")
    assert form.status_code == 200 and 'type="password"' in form.text
    assert "default-src 'self'" in form.headers["content-security-policy"]
    assert form.headers["x-frame-options"] == "DENY"

    wrong = client.post("/console/login", data={"token": "nope", "next": "/console/agents"})
    assert wrong.status_code == 401 and "The token is invalid, expired or revoked." in wrong.text
    assert "set-cookie" not in wrong.headers

    good = client.post(
        "/console/login", data={"token": secret, "next": "/console/agents"}, follow_redirects=False
    )
    assert good.status_code == 303 and good.headers["location"] == "/console/agents"
    cookie = good.headers["set-cookie"]
    session = SESSION_COOKIE.match(cookie).group(1)
    assert len(session) >= 40 and session != secret and secret not in cookie
    for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/console"):
        assert flag in cookie

    evil = client.post(
        "/console/login", data={"token": secret, "next": "//evil.example/x"}, follow_redirects=False
    )
    assert evil.headers["location"] == "/console/backups"  # no open redirect


def test_the_cookie_does_not_open_the_v2_api_and_its_errors_stay_json(client, secret, browser):
    assert browser.get("/console/backups").status_code == 200
    response = client.get(f"/v2/{PROJECT}/backups", headers=browser.cookie)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "message": "Authentication required: send a valid X-Auth-Token header."
    }
    missing = client.get(f"/v2/{PROJECT}/backups/nope", headers=headers(secret))
    assert missing.status_code == 404 and missing.json() == {"message": "Backup not found."}
    assert (
        browser.get("/console/static/console.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )
    assert browser.get("/console/static/..%2Frouter.py").status_code == 404
    assert browser.get("/console/static/templates").status_code == 404


def test_logout_needs_the_csrf_token_then_forgets_the_cookie(browser):
    refused = browser.post("/console/logout", {}, csrf=False)
    assert refused.status_code == 403
    done = browser.post("/console/logout", {})
    assert done.status_code == 303 and done.headers["location"] == "/console/login"
    assert 'cloudbackup_console=""' in done.headers["set-cookie"]


def test_the_session_cookie_is_no_api_token(client, browser):
    response = client.get(f"/v2/{PROJECT}/backups", headers=headers(browser.session))
    assert response.status_code == 401
    assert response.json() == {"message": "The X-Auth-Token is invalid, expired or revoked."}


def test_after_logout_the_old_cookie_leads_to_the_login_form(browser, db):
    assert browser.get("/console/backups").status_code == 200
    assert browser.post("/console/logout", {}).status_code == 303
    away = browser.get("/console/backups")
    assert away.status_code == 303
    assert away.headers["location"] == "/console/login?next=%2Fconsole%2Fbackups"
    with db.transaction() as session:
        ended = session.execute(
            sa.select(CONSOLE_SESSIONS.c.ended_at, CONSOLE_SESSIONS.c.sealed_token)
        ).one()
    assert ended.ended_at is not None and ended.sealed_token is None


def test_an_expired_session_leads_to_the_login_form(browser, db):
    assert browser.get("/console/backups").status_code == 200
    with db.transaction() as session:
        session.execute(
            sa.update(CONSOLE_SESSIONS).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    away = browser.get("/console/backups")
    assert away.status_code == 303 and away.headers["location"].startswith("/console/login")


# -- CSRF and roles ---------------------------------------------------------------------------------
def test_posts_need_the_pages_csrf_token_and_the_same_origin(browser, client, secret, config):
    start = {"configuration_id": config.id}
    assert browser.post("/console/backups", start, csrf=False).status_code == 403
    assert (
        browser.post("/console/backups", {**start, "csrf_token": "0" * 64}, csrf=False).status_code
        == 403
    )
    other_site = browser.post("/console/backups", start, extra={"Origin": "http://evil.example"})
    assert other_site.status_code == 403
    cross = browser.post("/console/backups", start, extra={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    assert _api(client, secret, "/backups")["backups"] == []  # nothing was started

    started = browser.post("/console/backups", start)
    assert started.status_code == 303
    [backup] = _api(client, secret, "/backups")["backups"]
    assert started.headers["location"] == f"/console/backups/{backup['id']}?notice=started"


def test_observers_see_no_buttons_and_the_api_still_refuses_them(client, db, config):
    admin = Browser(client, token(db))
    backup = rows.backup(db, config.id, state="in_progress")
    done = rows.backup(db, config.id, state="completed", restorable=True, snapshot_id=1)
    observer = Browser(client, token(db, role="observer"))
    pages = {
        "/console/backups": ["Start backup"],
        f"/console/backups/{backup.id}": ["Stop backup"],
        f"/console/backups/{done.id}": ["Restore…"],
        "/console/configurations": ["New configuration", "Back up now"],
        f"/console/configurations/{config.id}": ["Back up now", ">Edit<", ">Delete<"],
    }
    for path, buttons in pages.items():
        for label in buttons:
            assert label in admin.get(path).text, (path, label)
            seen = observer.get(path)
            assert seen.status_code == 200 and label not in seen.text, (path, label)
    assert "read-only" in observer.get("/console/backups").text

    refused = observer.post(f"/console/backups/{backup.id}/stop", {})
    assert refused.status_code == 403
    assert "Your role does not allow this operation" in refused.text
    assert observer.get(f"/console/backups/{backup.id}").text.count("in progress") >= 1


# -- configurations -----------------------------------------------------------------------------
def test_create_a_configuration_from_the_form_then_edit_it(browser, client, secret, agent):
    form = browser.get("/console/configurations/new")
    assert form.status_code == 200
    assert '<label for="inclusions">' in form.text and 'id="inclusions"' in form.text
    fields = {
        "name": "home",
        "agent_id": agent["id"],
        "enabled": "on",
        "inclusions": "/home/me\nfile:/etc/hosts\n",
        "exclusions": "/home/me/.cache",
        "schedule_kind": "weekly",
        "interval": "2",
        "at": "03:15",
        "days": ["MO", "FR"],
        "time_zone": "Europe/Paris",
        "retention_days": "14",
        "emails": "me@example.com",
    }
    created = browser.post("/console/configurations", fields)
    assert created.status_code == 303, created.text
    config_id = created.headers["location"].split("/")[-1].split("?")[0]
    body = _api(client, secret, f"/configurations/{config_id}")
    assert body["inclusions"] == [
        {"type": "folder", "path": "/home/me/"},
        {"type": "file", "path": "/etc/hosts"},
    ]
    assert body["exclusions"] == [{"type": "folder", "path": "/home/me/.cache/"}]
    assert body["schedule"]["recurrence"] == [
        "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,FR;BYHOUR=3;BYMINUTE=15"
    ]
    assert body["retention"] == {"days": 14} and body["enabled"] is True
    page = browser.get(f"/console/configurations/{config_id}")
    assert "every 2 weeks on Mon,Fri at 03:15 (Europe/Paris)" in page.text

    edit = browser.get(f"/console/configurations/{config_id}/edit")
    assert 'value="weekly" selected' in edit.text and 'value="03:15"' in edit.text
    assert "file:/etc/hosts" in edit.text
    saved = browser.post(
        f"/console/configurations/{config_id}/edit",
        {**fields, "name": "home v2", "schedule_kind": "none", "enabled": ""},
    )
    assert saved.status_code == 303, saved.text
    body = _api(client, secret, f"/configurations/{config_id}")
    assert (body["name"], body["schedule"], body["enabled"]) == ("home v2", None, False)

    deleted = browser.post(f"/console/configurations/{config_id}/delete", {})
    assert deleted.status_code == 303
    assert _api(client, secret, f"/configurations/{config_id}")["deleted"] is True


def test_a_refused_form_shows_the_apis_reasons_and_keeps_what_was_typed(
    browser, client, secret, agent
):
    fields = {
        "name": "bad",
        "agent_id": agent["id"],
        "inclusions": "relative/dir",
        "schedule_kind": "daily",
        "interval": "1",
        "at": "01:00",
        "time_zone": "Mars/Olympus",
        "retention_days": "30",
        "emails": "not-an-address",
    }
    refused = browser.post("/console/configurations", fields)
    assert refused.status_code == 400
    assert "Validation failed." in refused.text
    assert "the path must be absolute" in refused.text
    assert "not-an-address" in refused.text and "Mars/Olympus" in refused.text
    assert _api(client, secret, "/configurations")["configurations"] == []

    unparsable = browser.post("/console/configurations", {**fields, "retention_days": "a week"})
    assert unparsable.status_code == 400 and "whole number of days" in unparsable.text


def test_text_from_users_is_escaped(browser, db, agent):
    rows.configuration(db, rows_agent(db, agent), name="<script>alert(1)</script>")
    page = browser.get("/console/configurations")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


# -- backups and restores ---------------------------------------------------------------------------
def test_backup_pages_show_counters_errors_timeline_and_live_parts(
    browser, client, secret, db, config
):
    from cloudbackup.store.tables import BackupError

    backup = rows.backup(
        db,
        config.id,
        state="completed_with_errors",
        files_searched=12,
        files_backed_up=5,
        bytes_searched=4096,
        bytes_backed_up=2048,
        errors_count=1,
        errors_reason="unable_to_process_some_files",
        errors_diagnostics="Some files could not be backed up. Partial list follows.",
        restorable=True,
        snapshot_id=7,
    )
    with db.transaction() as session:
        session.add(
            BackupError(
                backup_id=backup.id, index=0, path="/web/gone.html", type="file_or_folder_missing"
            )
        )
    listing = browser.get("/console/backups")
    assert listing.status_code == 200
    assert f'href="/console/backups/{backup.id}"' in listing.text and "5 / 12" in listing.text
    assert 'data-live="/console/backups/rows"' in listing.text
    assert browser.get("/console/backups?state=failed").text.count(backup.id[:8]) == 0
    assert backup.id[:8] in browser.get("/console/backups/rows?state=completed_with_errors").text
    assert backup.id[:8] in browser.get(f"/console/backups?configuration={config.id}").text

    detail = browser.get(f"/console/backups/{backup.id}")
    assert "/web/gone.html" in detail.text and "Some files could not be backed up." in detail.text
    assert "2.0 KiB" in detail.text and "Restore…" in detail.text
    live = browser.get(f"/console/backups/{backup.id}/live")
    assert live.status_code == 200 and "data-final" in live.text and "<html" not in live.text

    running = browser.post("/console/backups", {"configuration_id": config.id})
    backup_id = running.headers["location"].split("/")[-1].split("?")[0]
    page = browser.get(f"/console/backups/{backup_id}")
    assert "Stop backup" in page.text and "start requested" in page.text
    assert "data-reload-when-final" in page.text
    stopped = browser.post(f"/console/backups/{backup_id}/stop", {})
    assert stopped.status_code == 303
    assert _api(client, secret, f"/backups/{backup_id}")["state"] == "stopped"
    page = browser.get(f"/console/backups/{backup_id}").text
    timeline = re.findall(r'<span class="ev">([^<]+)</span>', page.split('id="timeline-h"')[1])
    assert timeline == ["start request", "stop request", "stopped"]

    conflict = browser.post("/console/backups", {"configuration_id": "nope"})
    assert conflict.status_code == 404 and "Configuration not found." in conflict.text


def test_restore_form_starts_a_restore_through_the_api(browser, client, secret, db, config):
    backup = rows.backup(db, config.id, state="completed", restorable=True, snapshot_id=1)
    form = browser.get(f"/console/backups/{backup.id}/restore")
    assert form.status_code == 200 and 'name="destination_path"' in form.text

    missing = browser.post(
        "/console/restores",
        {
            "backup_id": backup.id,
            "destination_agent_id": config.agent_id,
            "destination_path": "",
        },
    )
    assert missing.status_code == 400, missing.text
    assert _api(client, secret, "/restores")["restores"] == []

    started = browser.post(
        "/console/restores",
        {
            "backup_id": backup.id,
            "destination_agent_id": config.agent_id,
            "destination_path": "/tmp/restored",
            "overwrite": "on",
            "inclusions": "/web/",
        },
    )
    assert started.status_code == 303, started.text
    [restore] = _api(client, secret, "/restores")["restores"]
    assert started.headers["location"] == f"/console/restores/{restore['id']}?notice=restore"
    detail = _api(client, secret, f"/restores/{restore['id']}")
    assert detail["destination_path"] == "/tmp/restored" and detail["overwrite_files"] is True
    assert detail["inclusions"] == [{"type": "folder", "path": "/web/"}]
    assert restore["id"][:8] in browser.get("/console/restores").text
    page = browser.get(f"/console/restores/{restore['id']}")
    assert page.status_code == 200 and "/tmp/restored" in page.text and "Stop restore" in page.text


def test_agents_and_queues_pages(browser, agent, config):
    agents = browser.get("/console/agents")
    assert agents.status_code == 200 and agent["id"] in agents.text and ">1</a>" in agents.text
    queues = browser.get("/console/queues")
    assert queues.status_code == 200
    assert "operator project" in queues.text  # the admin API's own 403 message


def test_a_real_runs_page_shows_its_whole_timeline_and_counters(running, tmp_path):
    cli, http, secret, worker = running()
    tree = make_tree(tmp_path / "src", files=10, size=2000)
    agent = register_agent(http, secret, name="box")
    created = cli(
        "configs",
        "create",
        "--name",
        "tree",
        "--agent",
        agent["id"],
        "--include",
        f"{tree.root}/",
        "--exclude",
        f"{tree.root}/cache/",
        "--email",
        "a@example.com",
    )
    assert created.exit_code == 0, created.output
    page = Browser(http, secret)
    config_id = _api(http, secret, "/configurations")["configurations"][0]["id"]
    started = page.post("/console/backups", {"configuration_id": config_id})
    backup_id = started.headers["location"].split("/")[-1].split("?")[0]
    worker.join()
    html = page.get(f"/console/backups/{backup_id}").text
    timeline = re.findall(r'<span class="ev">([^<]+)</span>', html.split('id="timeline-h"')[1])
    assert timeline == ["start request", "queued", "preparing", "in progress", "completed"]
    assert f"<dt>Files searched</dt><dd>{tree.files}</dd>" in html
    assert "Restore…" in html and "Stop backup" not in html


def test_an_operator_sees_the_queues_and_pauses_one(client, db):
    operator = Browser(client, token(db, project_id="operator"))
    page = operator.get("/console/queues")
    assert page.status_code == 200, page.text
    names = re.findall(r"<td><code>([^<]+)</code></td><td>", page.text)
    assert names, page.text
    paused = operator.post(f"/console/queues/{names[0]}", {"action": "pause"})
    assert (
        paused.status_code == 303 and paused.headers["location"] == "/console/queues?notice=paused"
    )
    page = operator.get("/console/queues?notice=paused")
    assert "Queue paused." in page.text and f'aria-label="Resume queue {names[0]}"' in page.text
    operator.post(f"/console/queues/{names[0]}", {"action": "resume"})
    assert f'aria-label="Pause queue {names[0]}"' in operator.get("/console/queues").text


def test_the_queue_page_shows_what_the_api_counts_as_waiting(client, db):
    """Waiting is the runs the admission gate holds back (the API's `waiting`, with its oldest
    wait), not the broker's depth, which has a column of its own."""
    from cloudbackup.store import run_slots

    operator = Browser(client, token(db, project_id="operator"))
    queues = client.get("/v2/admin/queues", headers=headers(token(db, project_id="operator")))
    manual = next(q["name"] for q in queues.json()["queues"] if q["kind"] == "manual")
    agent = rows.agent(db)
    held = rows.backup(db, rows.configuration(db, agent).id, state="start_requested")
    with db.transaction() as session:
        run_slots.put_slot(session, held.id, agent.project_id, agent.id, manual, "queue paused")
    page = operator.get("/console/queues").text
    row = page.split(f"<td><code>{manual}</code></td>", 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r'<td class="num">([^<]*)</td>', row)
    assert "In broker" in page
    assert cells[0] == "1"  # waiting: the held-back run
    assert cells[1] != "\u2013"  # and how long it has waited (an en dash: none)


def test_two_agents_of_one_name_can_be_told_apart(browser, client, secret, db):
    first = register_agent(client, secret, name="box")
    second = register_agent(client, secret, name="box")
    for agent in (first, second):
        rows.configuration(db, rows.agent(db), agent_id=agent["id"])
    page = browser.get("/console/configurations").text
    assert f"box ({first['id'][:8]})" in page and f"box ({second['id'][:8]})" in page


def test_the_backup_page_shows_its_last_drill(browser, client, secret, db, config, settings):
    from cloudbackup.domain.drill_run import execute_drill

    backup = rows.backup(db, config.id, restorable=True, snapshot_id=7)
    assert "Last drill</dt><dd>none yet" in browser.get(f"/console/backups/{backup.id}").text
    started = client.post(f"/v2/{PROJECT}/backups/{backup.id}/drills", headers=headers(secret))
    assert started.status_code == 201
    assert execute_drill(db, settings, started.json()["id"]) == "failed"  # snapshot 7 is no vault's
    page = browser.get(f"/console/backups/{backup.id}").text
    assert "Last drill</dt><dd>failed, ended " in page and "0 files checked" in page


def test_the_backup_page_shows_the_last_drills_age_rto_throughput_and_schedule(
    browser, client, secret, db, settings, tmp_path
):
    from cloudbackup.domain.drill_run import execute_drill
    from cloudbackup.domain.drill_schedules import fire_due_drills
    from factories.runs import Recorder, backed_up

    tree = make_tree(tmp_path / "src", files=4, size=10_000, with_excluded=False)
    _, config, done = backed_up(db, settings, tree.root)
    page = browser.get(f"/console/backups/{done.id}").text
    assert "Drill schedule</dt><dd>none</dd>" in page
    url = f"/v2/{PROJECT}/configurations/{config.id}/drill-schedule"
    assert client.put(url, json={"every_hours": 24}, headers=headers(secret)).status_code == 201
    dispatcher = Recorder()
    assert fire_due_drills(db, dispatcher).started == 1
    [(_, drill_id, _)] = dispatcher.published
    assert execute_drill(db, settings, drill_id) == "passed"
    drill = client.get(f"/v2/{PROJECT}/drills/{drill_id}", headers=headers(secret)).json()
    schedule = client.get(url, headers=headers(secret)).json()

    page = browser.get(f"/console/backups/{done.id}").text
    assert re.search(r"Last drill</dt><dd>passed, ended \d+s ago \(", page), page
    assert f"recovery in {drill['duration_seconds']} s at " in page
    assert re.search(r" at [\d.]+ [KMG]?i?B/s</dd>", page)
    due = schedule["next_due_time"].replace("T", " ")[:19]
    assert f"Drill schedule</dt><dd>every 24 h, next due {due} UTC</dd>" in page

    newer = rows.backup(db, config.id, restorable=True, snapshot_id=done.snapshot_id)
    other = browser.get(f"/console/backups/{newer.id}").text
    assert "Last drill</dt><dd>none yet" in other
    assert f'the configuration\'s last drill (backup <a href="/console/backups/{done.id}">' in other
    assert "passed, ended " in other.split("Drill schedule")[1]
