"""The engine's object store (``engine.storage.Storage``) over the API: the objects of this
agent's own vault, stored by the server where its vault lives. Everything sent is already
sealed by the engine here; the server never sees plaintext or the vault's password.

Two things keep it near a hosted worker's speed without the engine knowing: packs are uploaded
behind the engine (``write_behind``: every other write and every listing waits for them), and a
restore's chunk reads can be fetched ahead in few coalesced requests (:meth:`reading_ahead`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from cloudbackup.agent.read_ahead import Read, ReadAhead
from cloudbackup.agent.session import AgentSession, ApiRefused
from cloudbackup.agent.write_behind import WriteBehind
from cloudbackup.engine import ObjectInfo

OCTETS = {"Content-Type": "application/octet-stream"}
PACK_PREFIX = "packs/"


class HttpStorage:
    """Objects under ``/v2/{project}/agents/{agent}/vault/objects/``; safe between threads
    (one ``httpx.Client``)."""

    local_root: Path | None = None

    def __init__(self, session: AgentSession) -> None:
        self.session = session
        self.base = session.agent_path("vault", "objects")
        self.uploads = WriteBehind(self._put)
        self.read_ahead: ReadAhead | None = None

    def _url(self, name: str) -> str:
        return f"{self.base}/{quote(name, safe='/')}"

    def put(self, name: str, data: bytes) -> None:
        if name.startswith(PACK_PREFIX):
            # Named by its content and referred to only by an index written later.
            self.uploads.submit(name, data)
            return
        self.uploads.wait()
        self._put(name, data)

    def _put(self, name: str, data: bytes) -> None:
        self.session.checked("PUT", self._url(name), content=data, headers=OCTETS)

    def create(self, name: str, data: bytes) -> bool:
        self.uploads.wait()
        response = self.session.request(
            "PUT", self._url(name), content=data, headers={**OCTETS, "If-None-Match": "*"}
        )
        if response.status_code == 412:
            return False
        if not response.is_success:
            raise ApiRefused(response)
        return True

    def get(self, name: str) -> bytes:
        return self._read(name, None)

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        ahead = self.read_ahead
        if ahead is not None:
            return ahead.get(name, offset, length)
        return self._read(name, (offset, length))

    def _read(self, name: str, byte_range: tuple[int, int] | None) -> bytes:
        if self.uploads.pending(name):
            self.uploads.wait(name)
        headers = {}
        if byte_range is not None:
            offset, length = byte_range
            headers["Range"] = f"bytes={offset}-{offset + length - 1}"
        response = self.session.request("GET", self._url(name), headers=headers)
        if response.status_code == 404:
            raise FileNotFoundError(name)
        if not response.is_success:
            raise ApiRefused(response)
        return response.content

    def _fetch_range(self, name: str, offset: int, length: int) -> bytes:
        return self._read(name, (offset, length))

    @contextmanager
    def reading_ahead(self, reads: Iterable[Read]) -> Iterator[ReadAhead]:
        """While inside, ``reads`` (the ranged reads about to come, in order) are fetched
        ahead, neighbours together; a read not among them is sent alone, as outside."""
        ahead = ReadAhead(self._fetch_range, reads)
        self.read_ahead = ahead
        try:
            yield ahead
        finally:
            self.read_ahead = None
            ahead.close()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self.uploads.wait()
        response = self.session.checked("GET", self.base, params={"prefix": prefix})
        for item in response.json()["objects"]:
            yield ObjectInfo(str(item["name"]), int(item["size"]), int(item["mtime_ns"]))

    def delete(self, name: str) -> None:
        self.uploads.wait()
        self.session.checked("DELETE", self._url(name))

    def flush(self) -> None:
        """Wait for the uploads in flight; raise the first that failed."""
        self.uploads.wait()

    def describe(self) -> str:
        return f"{self.session.identity.url}{self.base}"
