"""Log uploads of a remote agent (A12-A16): the worker hands the request to the agent's channel,
the agent gzips its own log (a file in its state folder) and PUTs it to the logfile's link, then
completes the logfile; the link then downloads it."""

from __future__ import annotations

import gzip
import logging
import os
import stat
from pathlib import Path
from typing import Any

from cloudbackup.agent.logs import gzipped_log, log_path, log_to_file
from cloudbackup.agent.register import register
from cloudbackup.agent.runner import AgentRunner
from cloudbackup.agent.session import AgentSession
from cloudbackup.agent.state import StateDir
from cloudbackup.domain.logfiles import upload_hosted_log
from cloudbackup.queue.agent_channels import RedisAgentChannel
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from factories.api import PROJECT, headers, token


def test_a_log_upload_of_a_remote_agent_sends_the_log_of_its_host(
    client: Any, db: Database, settings: Settings, tmp_path: Path
) -> None:
    state = StateDir(tmp_path / "state")
    identity = register(
        "http://testserver.local", PROJECT, token(db), "host-a", state, client=client
    )
    runner = AgentRunner(state, AgentSession(identity, client=client), wait=0)
    runner.start()
    runner.session.checked("GET", runner.channel, params={"wait": "0"})  # now it is remote
    handler = log_to_file(state.folder)
    try:
        logging.getLogger("cloudbackup.agent").info("a line only this host wrote")
    finally:
        logging.getLogger("cloudbackup").removeHandler(handler)
        handler.close()
    assert stat.S_IMODE(os.stat(log_path(state.folder)).st_mode) == 0o600

    admin = token(db)
    agent_id = identity.agent_id
    asked = client.post(f"/v2/{PROJECT}/agents/{agent_id}/logfiles", headers=headers(admin))
    assert asked.status_code == 202, asked.text
    logfile_id = asked.json()["id"]
    # What the worker's upload task does: a remote agent's log is on its host.
    channel = RedisAgentChannel(settings.broker_url)
    assert upload_hosted_log(db, settings, logfile_id, channel) == "delegated"
    [entry] = runner.session.checked(
        "GET", runner.channel, params={"wait": "1", "marker": "0"}
    ).json()["items"]
    assert (entry["item"]["type"], entry["item"]["id"]) == ("logfile_upload", logfile_id)

    assert runner.handle(entry["item"]) == "completed"
    logfile = client.get(
        f"/v2/{PROJECT}/agents/{agent_id}/logfiles/{logfile_id}", headers=headers(admin)
    ).json()
    assert logfile["state"] == "completed", logfile
    [link] = [link["href"] for link in logfile["links"] if link["rel"] == "logfile"]
    downloaded = client.get(link, headers=headers(admin))
    assert downloaded.status_code == 200
    assert b"a line only this host wrote" in gzip.decompress(downloaded.content)
    # Served once: the same item again (a re-published request) changes nothing.
    assert runner.handle(entry["item"]) == "noop"


def test_a_log_too_big_for_one_upload_sends_its_newest_lines(tmp_path: Path) -> None:
    lines = [b"%06d %s\n" % (n, os.urandom(40).hex().encode()) for n in range(20_000)]
    log_path(tmp_path).write_bytes(b"".join(lines))
    data = gzipped_log(tmp_path, limit=50_000)
    assert len(data) <= 50_000
    sent = gzip.decompress(data)
    assert sent.endswith(lines[-1]) and sent.startswith(b"0")  # whole lines, the newest
    assert len(sent) < sum(map(len, lines))
