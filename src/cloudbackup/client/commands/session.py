"""What every client command gets: the connection options, one API session, and the rule that
a refused or impossible request ends in one line and an exit code, never a traceback."""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from cloudbackup.client.api import ApiClient, ApiError, Unreachable
from cloudbackup.client.config import ConfigError, resolve
from cloudbackup.client.drafts import DraftError

EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_WITH_ERRORS = 3
EXIT_API = 4
EXIT_INTERRUPTED = 130


@dataclass
class Session:
    api: ApiClient
    as_json: bool
    out: Console
    err: Console

    def emit(self, data: Any, human: Callable[[], None]) -> None:
        """``--json``: the API's JSON as is; otherwise the human rendering."""
        if self.as_json:
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
        else:
            human()


class Fail(Exception):
    """A problem with what the user asked; printed as one line, exit code 2."""


_COMMON: dict[str, Any] = {
    "url": Annotated[
        str | None,
        typer.Option(
            "--url", envvar="CLOUDBACKUP_URL", help="API base URL.", rich_help_panel="Connection"
        ),
    ],
    "token": Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="CLOUDBACKUP_TOKEN",
            help="API token (X-Auth-Token).",
            show_default=False,
            rich_help_panel="Connection",
        ),
    ],
    "project": Annotated[
        str | None,
        typer.Option(
            "--project",
            envvar="CLOUDBACKUP_PROJECT",
            help="Project (tenant) id.",
            rich_help_panel="Connection",
        ),
    ],
    "as_json": Annotated[bool, typer.Option("--json", help="Print the API's JSON (for scripts).")],
}
_COMMON_DEFAULTS: dict[str, Any] = {"url": None, "token": None, "project": None, "as_json": False}


def api_command(
    group: typer.Typer | None, name: str, **options: Any
) -> Callable[[Callable[..., int | None]], Callable[..., None]]:
    """Register ``fn(session, ...)`` as a command that also takes the connection options.

    API errors become one line with the HTTP status (exit 4), never a traceback.
    """

    def decorate(fn: Callable[..., int | None]) -> Callable[..., None]:
        hints = typing.get_type_hints(fn, include_extras=True)
        own = [
            p.replace(annotation=hints[p.name])
            for p in inspect.signature(fn).parameters.values()
            if p.name != "s"
        ]
        common = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=_COMMON[n])
            for n, d in _COMMON_DEFAULTS.items()
        ]
        context = inspect.Parameter(
            "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
        )

        @functools.wraps(fn)
        def command(ctx: typer.Context, **kwargs: Any) -> None:
            connection = {n: kwargs.pop(n) for n in _COMMON_DEFAULTS}
            as_json = connection.pop("as_json")
            injected = (ctx.find_root().obj or {}).get("http")
            code = 0
            with open_session(as_json=as_json, http=injected, **connection) as session:
                code = fn(session, **kwargs) or 0
            if code:
                raise typer.Exit(code)

        params = [context, *own, *common]
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        if group is not None:
            group.command(name, **options)(command)
        return command

    return decorate


@contextmanager
def open_session(
    url: str | None,
    token: str | None,
    project: str | None,
    as_json: bool,
    http: httpx.Client | None = None,
) -> Iterator[Session]:
    """The API client for one command; ``http`` is injected by tests (a Litestar TestClient)."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    injected = http
    try:
        config = resolve(url, token, project)
        http = injected or httpx.Client(
            timeout=httpx.Timeout(30.0, connect=10.0),
            headers={"User-Agent": "cloudbackup-cli"},
        )
        out = Console(highlight=False)
        if not out.is_terminal and "COLUMNS" not in os.environ:
            out = Console(highlight=False, width=250)  # a pipe or a log: never wrap ids
        try:
            yield Session(
                ApiClient(http, config.url, config.project, config.token), as_json, out, err
            )
        finally:
            if not injected:
                http.close()
    except ApiError as exc:
        err.print(f"[red]error:[/red] {exc.one_line()}{_hint(exc)}", markup=True)
        raise typer.Exit(EXIT_API) from None
    except Unreachable as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True)
        raise typer.Exit(EXIT_API) from None
    except (ConfigError, DraftError, Fail) as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True)
        raise typer.Exit(EXIT_USAGE) from None


def _hint(exc: ApiError) -> str:
    if exc.status == 404 and exc.message == "Not found.":
        return " - check the project id; or this server does not offer the operation yet"
    if exc.status in (405, 501):
        return " - this server does not offer the operation yet"
    return ""
