"""How the client commands lay out what they print: tables that fit the terminal, key/value
pairs, and a run's list of errors."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from cloudbackup.client.commands.session import Session


def yes_no(value: object) -> str:
    return "yes" if value else "no"


class Grid:
    """A table that fits the terminal by leaving out optional columns (named with a trailing
    ``?``), right to left, instead of cutting ids or states short."""

    def __init__(self, *columns: str) -> None:
        self.columns = [c.rstrip("?") for c in columns]
        self.optional = [c.endswith("?") for c in columns]
        self.rows: list[list[str]] = []

    def add_row(self, *cells: object) -> None:
        self.rows.append(["-" if c is None else str(c) for c in cells])

    def __rich_console__(self, console: Console, options: Any) -> Any:
        keep = list(range(len(self.columns)))
        widths = [
            max([len(self.columns[i]), *(len(r[i]) for r in self.rows)])
            for i in range(len(self.columns))
        ]
        for i in reversed(range(len(self.columns))):
            if sum(widths[k] for k in keep) + 2 * (len(keep) - 1) <= options.max_width:
                break
            if self.optional[i]:
                keep.remove(i)
        table = Table(box=None, pad_edge=False, header_style="bold")
        for i in keep:
            table.add_column(self.columns[i], no_wrap=True, overflow="fold")
        for row in self.rows:
            table.add_row(*(row[i] for i in keep))
        yield table


def pairs(rows: list[tuple[str, Any]]) -> Table:
    """Two columns, key and value; an empty value shows as ``-``."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, "-" if value is None or value == "" else str(value))
    return table


def print_errors(s: Session, data: dict[str, Any]) -> None:
    """The files a backup or restore could not process (its ``errors`` resource)."""
    items = data.get("list") or []
    if data.get("diagnostics"):
        s.out.print(str(data["diagnostics"]))
    if not items:
        if not data.get("diagnostics"):
            s.out.print("no errors")
        return
    table = Grid("#", "TYPE", "PATH", "DETAIL?")
    for item in items:
        exc = item.get("exception") or {}
        table.add_row(
            str(item.get("index")),
            str(item.get("type")),
            str(item.get("path")),
            str(exc.get("description") or item.get("description") or ""),
        )
    s.out.print(table)
