"""Where the client finds the API, its token and its project.

Order, first wins: the ``--url``/``--token``/``--project`` flags, the ``CLOUDBACKUP_URL`` /
``CLOUDBACKUP_TOKEN`` / ``CLOUDBACKUP_PROJECT`` variables (typer reads both), then the file
``$XDG_CONFIG_HOME/cloudbackup/client.toml`` (``~/.config/...``; ``CLOUDBACKUP_CLIENT_CONFIG``
names another), then the default URL of ``cloudbackup dev``.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"
KEYS = ("url", "token", "project")


class ConfigError(Exception):
    """The client cannot be configured as asked; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class ClientConfig:
    url: str
    token: str
    project: str


def config_path() -> Path:
    explicit = os.environ.get("CLOUDBACKUP_CLIENT_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cloudbackup" / "client.toml"


def read_file(path: Path) -> dict[str, str]:
    """The ``url``/``token``/``project`` keys of a client.toml (missing file: nothing)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(KEYS)}")
    bad = [key for key, value in data.items() if not isinstance(value, str)]
    if bad:
        raise ConfigError(f"{path}: {', '.join(bad)} must be a string")
    return {key: str(value) for key, value in data.items()}


def write_file(path: Path, values: dict[str, str]) -> None:
    """Write a client.toml readable by its owner only (it holds a token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # JSON string escapes are valid TOML basic-string escapes.
    text = "".join(f"{key} = {json.dumps(values[key])}\n" for key in KEYS if values.get(key))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its old mode through os.open


def resolve(url: str | None, token: str | None, project: str | None) -> ClientConfig:
    """Fill what the flags and variables left out from the file; fail clearly if still missing."""
    path = config_path()
    stored = read_file(path) if not (url and token and project) else {}
    token = token or stored.get("token")
    project = project or stored.get("project")
    missing = [
        hint
        for value, hint in (
            (token, "a token (--token or CLOUDBACKUP_TOKEN)"),
            (project, "a project id (--project or CLOUDBACKUP_PROJECT)"),
        )
        if not value
    ]
    if missing:
        raise ConfigError(
            f"missing {' and '.join(missing)}; or run `cloudbackup login` to save them in {path}"
        )
    assert token and project
    return ClientConfig(
        url=(url or stored.get("url") or DEFAULT_URL).rstrip("/"), token=token, project=project
    )
