"""Where a vault's objects live: a local directory or an S3-compatible bucket.

The vault needs very little from a store: whole-object writes that appear atomically, an
exclusive create (for snapshot ids and locks), whole and ranged reads, listing by prefix and
deletes. Object names are ``/``-separated relative names such as ``packs/ab/ab12...``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol


class ObjectInfo(NamedTuple):
    """One listed object: its name, size in bytes and last-modified time (ns since the epoch)."""

    name: str
    size: int
    mtime_ns: int


class Storage(Protocol):
    """The object store behind a vault. Implementations must be safe to share between threads."""

    #: The local directory holding the objects, or None for remote stores.
    local_root: Path | None

    def put(self, name: str, data: bytes) -> None:
        """Write an object whole (replacing any previous one); readers never see it partial."""
        ...

    def create(self, name: str, data: bytes) -> bool:
        """Write an object only if no object has that name; False (and no write) otherwise."""
        ...

    def get(self, name: str) -> bytes:
        """Read a whole object; ``FileNotFoundError`` if it does not exist."""
        ...

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (fewer at the end); ``FileNotFoundError`` if absent."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose name starts with ``prefix``, in no particular order."""
        ...

    def delete(self, name: str) -> None:
        """Remove an object; removing an absent one is not an error."""
        ...

    def describe(self) -> str:
        """Where the objects are, for messages (never credentials)."""
        ...


class LocalStorage:
    """Objects as files below ``root``; written to ``root/tmp`` and renamed into place."""

    def __init__(self, root: Path | str) -> None:
        self.local_root: Path | None = Path(root)
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        # Per thread, a few open pack files: a restore reads chunk after chunk of one pack.
        self._open = threading.local()

    def _path(self, name: str) -> Path:
        # Names come from the engine and from listings; never let one leave the root.
        parts = name.split("/")
        if not name or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"invalid object name {name!r}")
        return self.root.joinpath(*parts)

    def _write_temp(self, data: bytes) -> str:
        # Created on the first write, so merely opening a missing vault leaves nothing behind.
        self._tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="obj-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return tmp_name

    def put(self, name: str, data: bytes) -> None:
        self._place(name, data, os.replace)

    def create(self, name: str, data: bytes) -> bool:
        try:
            # link() refuses an existing name atomically, unlike rename().
            self._place(name, data, os.link)
        except FileExistsError:
            return False
        return True

    def _place(self, name: str, data: bytes, move: Callable[[str, Path], None]) -> None:
        """Write ``data`` to a temp file, then ``move`` it to the object's name, durably."""
        final = self._path(name)
        tmp_name = self._write_temp(data)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            move(tmp_name, final)
        finally:
            Path(tmp_name).unlink(missing_ok=True)  # gone already after a rename
        # The new name must survive a crash before anything that refers to the object is written.
        _fsync_dir(final.parent)

    def get(self, name: str) -> bytes:
        return self._path(name).read_bytes()

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        files: _OpenFiles | None = getattr(self._open, "files", None)
        if files is None:
            files = self._open.files = _OpenFiles()
        return os.pread(files.fd(self._path(name)), length, offset)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # List the directory the prefix names (or its parent, for a partial last component).
        folder, _, _ = prefix.rpartition("/")
        base = self._path(folder) if folder else self.root
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            if Path(dirpath) == self.root:
                dirnames[:] = [d for d in dirnames if d != "tmp"]
            rel_dir = os.path.relpath(dirpath, self.root)
            for filename in filenames:
                name = filename if rel_dir == "." else f"{rel_dir}/{filename}"
                if not name.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, filename))
                except FileNotFoundError:
                    continue  # deleted while we listed
                yield ObjectInfo(name, st.st_size, st.st_mtime_ns)

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def describe(self) -> str:
        return str(self.root)


class _OpenFiles:
    """The last few files one thread read ranges of, kept open (closed with the thread)."""

    _KEEP = 8

    def __init__(self) -> None:
        self._fds: OrderedDict[Path, int] = OrderedDict()

    def fd(self, path: Path) -> int:
        fd = self._fds.pop(path, None)
        if fd is None:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            if len(self._fds) >= self._KEEP:
                _old, oldest = self._fds.popitem(last=False)
                os.close(oldest)
        self._fds[path] = fd  # most recently used last
        return fd

    def __del__(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)


def new_s3_client(
    endpoint_url: str | None, region: str | None, access_key_id: str | None, secret: str | None
) -> Any:
    """A boto3 S3 client (thread-safe); empty settings fall back to boto3's own lookup."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region or None,
        aws_access_key_id=access_key_id or None,
        aws_secret_access_key=secret or None,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=16),
    )


class S3Storage:
    """Objects in an S3-compatible bucket under ``prefix/`` (boto3; clients are thread-safe)."""

    local_root: Path | None = None

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._client = client or new_s3_client(
            endpoint_url, region, access_key_id, secret_access_key
        )

    def _key(self, name: str) -> str:
        return self.prefix + name

    def put(self, name: str, data: bytes) -> None:
        self._client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)

    def create(self, name: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            # A conditional write: the store itself arbitrates between concurrent creators.
            self._client.put_object(
                Bucket=self.bucket, Key=self._key(name), Body=data, IfNoneMatch="*"
            )
        except ClientError as exc:
            if _status(exc) in (409, 412):
                return False
            raise
        return True

    def get(self, name: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"]
        except ClientError as exc:
            if _status(exc) == 404:
                raise FileNotFoundError(name) from exc
            raise
        data: bytes = body.read()
        return data

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        from botocore.exceptions import ClientError

        if length <= 0:
            return b""
        try:
            body = self._client.get_object(
                Bucket=self.bucket,
                Key=self._key(name),
                Range=f"bytes={offset}-{offset + length - 1}",
            )["Body"]
        except ClientError as exc:
            if _status(exc) == 404:
                raise FileNotFoundError(name) from exc
            if _status(exc) == 416:
                return b""
            raise
        data: bytes = body.read()
        return data

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for item in page.get("Contents", []):
                modified = item["LastModified"]
                yield ObjectInfo(
                    item["Key"][len(self.prefix) :],
                    int(item["Size"]),
                    int(modified.timestamp() * 1e9) if modified else time.time_ns(),
                )

    def delete(self, name: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(name))

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def _status(exc: Any) -> int:
    with contextlib.suppress(KeyError, TypeError, ValueError):
        return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
    return 0


def _fsync_dir(folder: Path) -> None:
    """Make renames and creations inside ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
