"""Fixtures of the client and console tests: tokens, an agent, and an API whose runs really run."""

from __future__ import annotations

import msgspec
import pytest
from litestar.testing import TestClient

from cloudbackup.server import create_app
from factories.api import register_agent, token
from factories.cli import Cli
from factories.workers import ThreadWorker


@pytest.fixture
def secret(db):
    return token(db)


@pytest.fixture
def cli(client, secret, tmp_path):
    return Cli(client, secret, tmp_path)


@pytest.fixture
def agent(client, secret):
    return register_agent(client, secret, name="laptop")


@pytest.fixture
def running(settings, db, tmp_path):
    """``running(max_bps)``: an API whose published backups really run (in threads), a CLI bound
    to it, its client, an admin token and the worker."""

    def make(max_bps: int = 0):
        fast = msgspec.structs.replace(settings, progress_interval=0.05, backup_max_bps=max_bps)
        worker = ThreadWorker(db, fast)
        http = TestClient(app=create_app(fast, database=db, dispatcher=worker))
        http.__enter__()
        opened.append((http, worker))
        secret = token(db)
        return Cli(http, secret, tmp_path), http, secret, worker

    opened: list = []
    yield make
    for http, worker in opened:
        worker.join()
        http.__exit__(None, None, None)
