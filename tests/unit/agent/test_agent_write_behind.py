"""Pack uploads behind the engine (agent.write_behind through HttpStorage): a pack put returns
while it is sent, a bounded number at a time, and nothing that could refer to a pack (an index,
a snapshot, a delete, a listing) is sent before every pack upload is done; a failed upload is
raised there, and what would have named the pack is not sent."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest

from cloudbackup.agent.http_storage import HttpStorage
from cloudbackup.agent.session import AgentSession

PACK = "packs/ab/" + "ab" * 32
INDEX = "index/" + "0" * 32


class Session:
    """Records the PUTs it is sent; a pack PUT waits for ``release`` (or fails)."""

    identity = SimpleNamespace(url="http://api.test")

    def __init__(self, *, fail: bool = False) -> None:
        self.release = threading.Event()
        self.fail = fail
        self.sent: list[str] = []
        self.started: list[str] = []
        self.lock = threading.Lock()

    def agent_path(self, *parts: str) -> str:
        return "/".join(("/v2/p/agents/a", *parts))

    def checked(self, method: str, path: str, **_: Any) -> Any:
        name = path.split("/vault/objects/", 1)[-1]
        with self.lock:
            self.started.append(name)
        if name.startswith("packs/"):
            assert self.release.wait(10)
            if self.fail:
                raise ConnectionError("the pack upload failed")
        with self.lock:
            self.sent.append(name)
        return SimpleNamespace(json=lambda: {"objects": []})


def _storage(session: Session) -> HttpStorage:
    return HttpStorage(cast(AgentSession, session))


def _later(work: Any) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_a_pack_put_returns_at_once_and_an_index_waits_for_it() -> None:
    session = Session()
    storage = _storage(session)
    storage.put(PACK, b"sealed pack")  # returns while the upload waits
    writer = _later(lambda: storage.put(INDEX, b"names the pack"))
    time.sleep(0.2)
    assert INDEX not in session.started  # the index waits for the pack
    session.release.set()
    writer.join(5)
    assert session.sent == [PACK, INDEX]


def test_a_listing_and_a_delete_wait_for_the_uploads_too() -> None:
    session = Session()
    storage = _storage(session)
    storage.put(PACK, b"sealed pack")
    lister = _later(lambda: (list(storage.list("packs/")), storage.delete("locks/prune")))
    time.sleep(0.2)
    assert session.started == [PACK]
    session.release.set()
    lister.join(5)
    assert session.sent == [PACK, "/v2/p/agents/a/vault/objects", "locks/prune"]


def test_a_failed_upload_is_raised_at_the_next_write_which_is_not_sent() -> None:
    session = Session(fail=True)
    session.release.set()
    storage = _storage(session)
    storage.put(PACK, b"sealed pack")
    with pytest.raises(ConnectionError):
        storage.put(INDEX, b"names the pack")
    assert INDEX not in session.started


def test_at_most_two_uploads_are_in_flight() -> None:
    session = Session()
    storage = _storage(session)
    storage.put("packs/01/" + "01" * 32, b"1")
    storage.put("packs/02/" + "02" * 32, b"2")
    third = _later(lambda: storage.put("packs/03/" + "03" * 32, b"3"))
    time.sleep(0.2)
    assert third.is_alive()  # waits for a place
    assert len(session.started) == 2
    session.release.set()
    third.join(5)
    storage.flush()
    assert len(session.sent) == 3
