"""The engine's object store (``engine.storage.Storage``) over the API: the objects of this
agent's own vault, stored by the server where its vault lives. Everything sent is already
sealed by the engine here; the server never sees plaintext or the vault's password."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from cloudbackup.agent.session import AgentSession, ApiRefused
from cloudbackup.engine import ObjectInfo

OCTETS = {"Content-Type": "application/octet-stream"}


class HttpStorage:
    """Objects under ``/v2/{project}/agents/{agent}/vault/objects/``; safe between threads
    (one ``httpx.Client``)."""

    local_root: Path | None = None

    def __init__(self, session: AgentSession) -> None:
        self.session = session
        self.base = session.agent_path("vault", "objects")

    def _url(self, name: str) -> str:
        return f"{self.base}/{quote(name, safe='/')}"

    def put(self, name: str, data: bytes) -> None:
        self.session.checked("PUT", self._url(name), content=data, headers=OCTETS)

    def create(self, name: str, data: bytes) -> bool:
        response = self.session.request(
            "PUT", self._url(name), content=data, headers={**OCTETS, "If-None-Match": "*"}
        )
        if response.status_code == 412:
            return False
        if not response.is_success:
            raise ApiRefused(response)
        return True

    def get(self, name: str) -> bytes:
        response = self.session.request("GET", self._url(name))
        if response.status_code == 404:
            raise FileNotFoundError(name)
        if not response.is_success:
            raise ApiRefused(response)
        return response.content

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        response = self.session.request("GET", self._url(name), headers=headers)
        if response.status_code == 404:
            raise FileNotFoundError(name)
        if not response.is_success:
            raise ApiRefused(response)
        return response.content

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        response = self.session.checked("GET", self.base, params={"prefix": prefix})
        for item in response.json()["objects"]:
            yield ObjectInfo(str(item["name"]), int(item["size"]), int(item["mtime_ns"]))

    def delete(self, name: str) -> None:
        self.session.checked("DELETE", self._url(name))

    def describe(self) -> str:
        return f"{self.session.identity.url}{self.base}"
