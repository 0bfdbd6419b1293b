"""Fixtures for the engine tests: a generated source tree, a vault and a backup runner."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from engine_trees import FAST_KDF, PASSWORD, BackupFn, Tree, build_tree

from cloudbackup.engine import BackupProgress, BackupResult, Vault, run_backup


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return build_tree(tmp_path / "src")


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return Vault(tmp_path / "vault", password=PASSWORD, kdf=FAST_KDF)


@pytest.fixture
def backup(vault: Vault) -> BackupFn:
    """``run_backup`` with no-op callbacks unless given, reporting after every entry and
    block; ``progress`` collects every report."""

    def run(
        inclusions: Iterable[Any],
        exclusions: Iterable[Any] = (),
        *,
        progress: list[BackupProgress] | None = None,
        **kwargs: Any,
    ) -> BackupResult:
        kwargs.setdefault("should_stop", lambda: False)
        # Every entry and block reports, so the tests can count and place the calls.
        kwargs.setdefault("report_seconds", 0.0)
        kwargs.setdefault("on_progress", (progress.append if progress is not None else _ignore))
        return run_backup(vault, inclusions, exclusions, **kwargs)

    return run


def _ignore(_progress: BackupProgress) -> None:
    pass


@pytest.fixture
def encrypted_vault(tmp_path: Path) -> Vault:
    return Vault(tmp_path / "secret-vault", password=PASSWORD, kdf=FAST_KDF)
