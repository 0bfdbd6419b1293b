"""The server-side `cloudbackup` command: ``root`` assembles the command groups (service,
database, tokens, operations, engine, and the API client's groups) and ``main`` runs them."""

from cloudbackup.cli.root import app, main

__all__ = ["app", "main"]
