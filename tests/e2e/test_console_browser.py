"""The web console in a real browser (Debian's chromium, driven by Playwright) against the real
stack as a user runs it: `cloudbackup dev` (API + worker + beat, SQLite, embedded Redis).

Log in, create configurations with the form, start a backup and watch it reach `completed`, stop a
slow one, restore the finished one through the restore form (byte-identical), and check that an
observer sees no button that changes anything. A screenshot of the backups page is saved under
$CLOUDBACKUP_TEST_ARTIFACTS (default: the test's temporary folder); the README's picture is made
with `CLOUDBACKUP_TEST_ARTIFACTS=docs/img pytest tests/e2e/test_console_browser.py`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from factories.api import agent_body
from factories.trees import digests, make_tree

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
TIMEOUT_MS = 60_000


def _ensure_chromium() -> None:
    """Install Debian's chromium when it is missing (Playwright cannot download browsers here)."""
    if Path(CHROMIUM).exists():
        return
    apt = shutil.which("apt-get")
    assert apt, f"{CHROMIUM} is missing and apt-get is not available to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # A fresh machine has no package lists: without them the install finds nothing.
    subprocess.run([apt, "update"], check=True, timeout=900, env=env)
    subprocess.run([apt, "install", "-y", "chromium"], check=True, timeout=900, env=env)
    assert Path(CHROMIUM).exists(), "apt-get install chromium did not provide /usr/bin/chromium"


def _texts_after_reloads(page, selector: str) -> list[str]:
    """The texts of ``selector`` once the page is done reloading itself (a run that ends
    reloads its live page, which can tear down the context of a read in flight)."""
    from playwright.sync_api import Error

    for _ in range(10):
        page.wait_for_load_state()
        try:
            return page.locator(selector).all_inner_texts()
        except Error:
            time.sleep(0.3)
    return page.locator(selector).all_inner_texts()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    def __init__(self, base: str, env: dict[str, str], work: Path) -> None:
        self.base = base
        self.env = env
        self.work = work

    def token(self, role: str) -> str:
        created = subprocess.run(
            [
                sys.executable,
                "-m",
                "cloudbackup.cli",
                "token",
                "create",
                "--project",
                "110011",
                "--role",
                role,
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        return created.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("console")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDBACKUP_")}
    env.update(
        CLOUDBACKUP_DATA_DIR=str(work / "data"),
        # ~4 MiB/s: the big tree below takes seconds, long enough to watch and to stop.
        CLOUDBACKUP_BACKUP_MAX_BPS=str(4 * 1024 * 1024),
        CLOUDBACKUP_PROGRESS_INTERVAL="0.2",
    )
    port = _free_port()
    log_path = work / "dev.log"
    dev = subprocess.Popen(
        [sys.executable, "-m", "cloudbackup.cli", "dev", "--port", str(port)],
        env=env,
        cwd=work,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert dev.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.3)
        yield Stack(base, env, work)
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        try:
            dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _ensure_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


def _artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CLOUDBACKUP_TEST_ARTIFACTS") or tmp_path)
    folder = folder if folder.is_absolute() else ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _login(page, base: str, secret: str) -> None:
    page.goto(f"{base}/console/backups")
    assert "/console/login" in page.url  # the console needs a login first
    page.get_by_label("API token").fill(secret)
    page.get_by_label("API token").press("Enter")  # keyboard only
    page.wait_for_url(f"{base}/console/backups")


def _new_configuration(page, base: str, name: str, folder: Path, exclude: Path | None) -> str:
    page.goto(f"{base}/console/configurations")
    page.get_by_role("link", name="New configuration").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Folders and files to back up, one per line").fill(f"{folder}\n")
    if exclude is not None:
        page.get_by_label("Leave out, one per line (inside the folders above)").fill(str(exclude))
    page.get_by_label("E-mail on failure (one address per line)").fill("me@example.com")
    page.get_by_role("button", name="Create configuration").click()
    page.get_by_text("Configuration created.").wait_for()
    return page.url.split("/console/configurations/")[1].split("?")[0]


def _status(page) -> str:
    return page.locator("#status-h .state").inner_text().strip()


def _wait_status(page, wanted: set[str], timeout: float = 60.0) -> str:
    """The live part refreshes itself (and reloads the page when the run ends)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = _status(page)
        except Exception:
            status = ""
        if status in wanted:
            return status
        assert time.monotonic() < deadline, f"status {status!r}, wanted {wanted}"
        time.sleep(0.2)


# Each table's scroll area scrolled to its end: its overflow, the columns shown (by their
# text, before CSS upper-cases them) and where the last one lies.
REACH_THE_LAST_COLUMN = """
[...document.querySelectorAll('.scroll')].filter(a => a.querySelector('thead')).map(area => {
  area.scrollLeft = area.scrollWidth;
  const shown = [...area.querySelectorAll('thead th')]
    .filter(th => getComputedStyle(th).display !== 'none');
  const last = shown[shown.length - 1].getBoundingClientRect();
  return {overflow: getComputedStyle(area).overflowX, right: area.getBoundingClientRect().right,
          columns: shown.map(th => th.textContent.trim()), last_left: last.left,
          last_right: last.right};
})
"""


def test_a_user_backs_up_stops_and_restores_from_the_console(stack, browser, tmp_path):
    small = make_tree(tmp_path / "small", files=25, size=20_000)
    big = make_tree(
        tmp_path / "big",
        files=4,
        size=100,
        big_files=3,
        big_size=16 * 1024 * 1024,
        seed=11,
        with_excluded=False,
    )
    admin = stack.token("admin")
    agent = httpx.post(
        f"{stack.base}/v2/110011/agents",
        json=agent_body(name="laptop"),
        headers={"X-Auth-Token": admin},
    )
    assert agent.status_code == 201, agent.text

    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    _login(page, stack.base, admin)
    cookie = next(c for c in context.cookies() if c["name"] == "cloudbackup_console")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # scripts cannot read the token

    # A configuration made with the form, then a backup watched to `completed`.
    _new_configuration(page, stack.base, "documents", small.root, small.root / "cache")
    page.get_by_role("button", name="Back up now").click()
    page.get_by_text("Backup started.").wait_for()
    done_url = page.url.split("?")[0]
    assert _wait_status(page, {"completed", "completed with errors", "failed"}) == "completed"
    counters = page.locator(".counters")
    assert counters.get_by_text("Files searched").locator("xpath=..").locator(
        "dd"
    ).inner_text() == str(small.files)
    assert page.get_by_role("link", name="Restore…").is_visible()
    assert page.get_by_role("button", name="Stop backup").count() == 0

    # A slow one: watch it run from the list, photograph the list, then stop it.
    _new_configuration(page, stack.base, "videos", big.root, None)
    page.get_by_role("button", name="Back up now").click()
    page.get_by_text("Backup started.").wait_for()
    slow_url = page.url.split("?")[0]
    _wait_status(page, {"in progress"})
    started = time.monotonic()
    page.goto(f"{stack.base}/console/backups")
    running = page.locator("tr", has=page.locator(".s-in_progress"))
    running.locator("progress").first.wait_for()
    # Meanwhile a second run of the unchanged small tree, from the list's own form: it stores
    # nothing new (deduplicated), and appears in the list without a reload.
    page.get_by_label("Configuration to back up").select_option(label="documents")
    page.get_by_role("button", name="Start backup").click()
    page.get_by_text("Backup started.").wait_for()
    assert _wait_status(page, {"completed", "completed with errors", "failed"}) == "completed"
    time.sleep(max(0.0, 5.5 - (time.monotonic() - started)))  # first progress event: after 5 s
    page.goto(f"{stack.base}/console/backups")
    page.locator(".s-in_progress").first.wait_for()
    assert page.locator("tbody .state").all_inner_texts() == [
        "completed",
        "in progress",
        "completed",
    ]
    shot = _artifacts(tmp_path) / "console-backups.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

    page.goto(slow_url)
    assert _status(page) == "in progress"
    page.get_by_role("button", name="Stop backup").click()
    page.get_by_role("status").get_by_text("Stop requested").wait_for()
    assert _wait_status(page, {"stopped", "completed"}) == "stopped"
    timeline = _texts_after_reloads(page, ".timeline .ev")
    assert timeline[0] == "start request" and timeline[-2:] == ["stop request", "stopped"]

    # The list filters by state.
    page.goto(f"{stack.base}/console/backups")
    page.get_by_label("State").select_option("stopped")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**state=stopped**")
    assert page.locator("tbody .state").all_inner_texts() == ["stopped"]

    # Restore the finished backup through the form, into a new folder.
    page.goto(done_url)
    page.get_by_role("link", name="Restore…").click()
    out = tmp_path / "restored"
    page.get_by_label("Into folder").fill(str(out))
    page.get_by_role("button", name="Start restore").click()
    page.get_by_text("Restore started.").wait_for()
    assert _wait_status(page, {"completed", "completed with errors", "failed"}) == "completed"
    expected = {k: v for k, v in digests(small.root).items() if not k.startswith("cache")}
    assert digests(out / str(small.root).lstrip("/")) == expected
    page.goto(f"{stack.base}/console/restores")
    assert page.locator("tbody .state").first.inner_text() == "completed"

    # At 1280 px every list shows all its columns: no table is wider than its scroll area; and
    # an empty cell is one en dash everywhere (no hyphen or em dash stands for "nothing").
    for path in ("/console/backups", "/console/restores", "/console/configurations"):
        page.goto(stack.base + path)
        widths = page.evaluate(
            "[...document.querySelectorAll('.scroll')].map(e => [e.scrollWidth, e.clientWidth])"
        )
        assert all(scroll <= client for scroll, client in widths), (path, widths)
        cells = page.locator("td").all_inner_texts()
        assert not [c for c in cells if c.strip() in {"-", "—", "--"}], (path, cells)

    # Phone width: nothing but the tables' own scroll areas is wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    for path in (done_url.replace(stack.base, ""), "/console/configurations", "/console/backups"):
        page.goto(stack.base + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    # ... and a wide table scrolls inside its area: scrolled to its end, its last column (the
    # columns after STATE, ERRORS last) lies wholly on the screen, never clipped.
    for path, after_state in (
        ("/console/backups", ["Progress", "Files", "Stored", "Errors"]),
        ("/console/restores", ["Files", "Bytes", "Errors"]),
    ):
        page.goto(stack.base + path)
        area = page.evaluate(REACH_THE_LAST_COLUMN)[0]  # the list comes first
        assert area["overflow"] in {"auto", "scroll"}, (path, area)
        assert area["columns"][area["columns"].index("State") + 1 :] == after_state, (path, area)
        assert area["last_left"] >= 0 and area["last_right"] <= area["right"] <= 390, (path, area)
    page.screenshot(path=str(_artifacts(tmp_path) / "console-backups-phone.png"), full_page=True)
    assert problems == []
    context.close()


def test_an_observer_sees_everything_and_no_button_that_changes_anything(stack, browser):
    admin = stack.token("admin")
    hdrs = {"X-Auth-Token": admin}
    agent = httpx.post(
        f"{stack.base}/v2/110011/agents", json=agent_body(name="observed"), headers=hdrs
    ).json()
    body = {
        "agent_id": agent["id"],
        "name": "watched",
        "enabled": True,
        "schedule": None,
        "retention": {"days": 1},
        "inclusions": [{"type": "folder", "path": f"{stack.work}/nonexistent/"}],
        "exclusions": [],
        "notifications": [
            {
                "type": "email",
                "destination": "a@example.com",
                "on_success": False,
                "on_failure": True,
            }
        ],
    }
    config = httpx.post(f"{stack.base}/v2/110011/configurations", json=body, headers=hdrs).json()
    backup = httpx.post(
        f"{stack.base}/v2/110011/backups",
        headers=hdrs,
        json={"configuration_id": config["id"], "state": "start_requested"},
    ).json()

    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    _login(page, stack.base, stack.token("observer"))
    assert page.get_by_text("read-only").is_visible()
    assert page.get_by_role("button", name="Start backup").count() == 0
    page.goto(f"{stack.base}/console/backups/{backup['id']}")
    _wait_status(page, {"completed with errors", "completed", "failed"})
    page.goto(f"{stack.base}/console/configurations/{config['id']}")
    page.get_by_role("heading", name="watched").wait_for()
    for name in ("Back up now", "Edit", "Delete", "Stop backup", "Restore…"):
        assert page.get_by_role("button", name=name).count() == 0, name
        assert page.get_by_role("link", name=name).count() == 0, name
    # The keyboard reaches the skip link first, and it leads to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    context.close()
