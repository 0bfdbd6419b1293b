"""The fuzz test and the hostile-input tests of the API, on PostgreSQL (issue 10 item 15).

The unit suite runs them on SQLite. Here the very same test functions run with the ``settings``
(and so ``db`` and ``client``) of a fresh PostgreSQL database per test, a copy of one migrated
template: PostgreSQL refuses what SQLite stores (a 100,000-character id in a ``varchar(36)``
gave a 500), and B1 takes its one-statement asyncpg path (``store/backup_starts.py``) only here.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psycopg
import pytest

from cloudbackup.settings import Settings, load_settings
from cloudbackup.store import migrate
from cloudbackup.store.backup_starts import PostgresBackupStarts, backup_start_store
from cloudbackup.store.db import Database
from factories.api import start_backup
from factories.services import PG_ADMIN_URL, fresh_postgres_database, require_services

UNIT_API = Path(__file__).resolve().parents[1] / "unit" / "api"


def _unit_module(name: str) -> ModuleType:
    """A unit test module under the name pytest gives it (its basename: the unit folders have
    no ``__init__.py``), so it is loaded once per session whichever suite collects it first
    (the fuzz module registers a schemathesis check, which may happen once)."""
    if str(UNIT_API) not in sys.path:
        sys.path.insert(0, str(UNIT_API))
    return importlib.import_module(name)


_fuzz = _unit_module("test_fuzz_schemathesis")
_limits = _unit_module("test_limits")
target = _fuzz.target
# What PostgreSQL refuses and SQLite stores comes in with what a request writes or filters by:
# every schema-violating case, and the valid cases of the operations that write. Valid reads
# (54 GET cases, each a fresh database) are left to the SQLite run, to keep the suite short.
PG_CASES = [
    (label, mode)
    for label, mode in _fuzz.CASES
    if mode == "negative" or label.split()[0] not in ("GET", "HEAD")
]


@pytest.mark.parametrize(("label", "mode"), PG_CASES, ids=[f"{m} {label}" for label, m in PG_CASES])
def test_fuzz_operation(target: object, label: str, mode: str) -> None:
    _fuzz.test_fuzz_operation(target, label, mode)


setup = _limits.setup
test_a_body_over_the_limit_is_413_json = _limits.test_a_body_over_the_limit_is_413_json
test_a_streamed_body_over_the_limit_is_413_json = (
    _limits.test_a_streamed_body_over_the_limit_is_413_json
)
test_headers_over_the_limit_are_431_json = _limits.test_headers_over_the_limit_are_431_json
test_json_nested_too_deep_is_400_not_500 = _limits.test_json_nested_too_deep_is_400_not_500
test_a_deep_json_patch_is_400_and_changes_nothing = (
    _limits.test_a_deep_json_patch_is_400_and_changes_nothing
)
test_json_that_is_not_utf8_is_400_not_500 = _limits.test_json_that_is_not_utf8_is_400_not_500
test_list_limit_outside_1_to_100_is_400 = _limits.test_list_limit_outside_1_to_100_is_400
test_unknown_query_parameters_are_400 = _limits.test_unknown_query_parameters_are_400
test_a_query_parameter_given_twice_is_400 = _limits.test_a_query_parameter_given_twice_is_400
test_numbers_in_queries_are_ascii_digits_of_a_sane_length = (
    _limits.test_numbers_in_queries_are_ascii_digits_of_a_sane_length
)
test_nul_characters_never_reach_the_database = _unit_module(
    "test_backups"
).test_nul_characters_never_reach_the_database
test_a_huge_counter_through_the_api_is_a_400_that_changes_nothing = _unit_module(
    "test_run_patch"
).test_a_huge_counter_through_the_api_is_a_400_that_changes_nothing

pytestmark = [pytest.mark.slow, pytest.mark.services]

# The SQLite run explores each operation with CLOUDBACKUP_FUZZ_EXAMPLES cases; here the point is
# what PostgreSQL refuses that SQLite stores (widths, ranges, NUL), which a few cases per
# operation reach, so the PostgreSQL run takes a third of them and the suite stays short.
PG_EXAMPLES = max(1, _fuzz.EXAMPLES // 3)


@pytest.fixture(autouse=True)
def _fewer_fuzz_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fuzz, "EXAMPLES", PG_EXAMPLES)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """One migrated database, copied for each test (a copy takes a fraction of a migration)."""
    require_services()
    with fresh_postgres_database() as url:
        migrate.upgrade(url)
        yield url.rsplit("/", 1)[1]


@pytest.fixture
def pg_copy(pg_template: str) -> Iterator[str]:
    name = f"cloudbackup_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(tmp_path: Path, fake_broker_url: str, pg_copy: str) -> Settings:
    """The unit suite's settings, on PostgreSQL instead of a SQLite file."""
    shutil.rmtree(tmp_path / "service", ignore_errors=True)
    return load_settings(
        {
            "CLOUDBACKUP_DATA_DIR": str(tmp_path / "service"),
            "CLOUDBACKUP_ALLOWED_ROOTS": "/",
            "CLOUDBACKUP_DATABASE_URL": pg_copy,
            "CLOUDBACKUP_BROKER_URL": fake_broker_url,
            "CLOUDBACKUP_VAULT_PATH": str(tmp_path / "vault"),
            "CLOUDBACKUP_TOKEN_CACHE_SECONDS": "0",
            "CLOUDBACKUP_BACKUP_QUEUE": f"backups-{tmp_path.name}",
        }
    )


def test_b1_takes_its_one_statement_path_here(db: Database) -> None:
    """The app these tests call starts backups on asyncpg's one statement, not the SQLite path."""
    assert isinstance(backup_start_store(db.url), PostgresBackupStarts)


def test_a_configuration_id_of_100000_characters_is_404_through_b1(client, setup) -> None:
    """The request that gave a 500 on PostgreSQL (``StringDataRightTruncationError``)."""
    _, _, secret = setup
    answer = start_backup(client, secret, "c" * 100_000)
    assert answer.status_code == 404, answer.text
    assert answer.json()["message"] == "Configuration not found."


WIDE = 794_857_345_871  # the fuzzer's delivery id: wider than an INTEGER column


def test_ids_wider_than_32_bits_never_reach_postgresql(client, setup) -> None:
    """Event and delivery ids are INTEGER columns: wider ones in paths, markers and bodies are
    answered as on SQLite (404, a page, an empty replay), never with PostgreSQL's 500
    ``integer out of range`` (the fuzzer found it on the delivery retry)."""
    from factories.api import PROJECT, headers

    _, _, secret = setup
    hook = client.post(
        f"/v2/{PROJECT}/webhooks",
        json={"url": "http://93.184.216.34/", "events": ["*"]},
        headers=headers(secret),
    )
    assert hook.status_code == 201, hook.text
    base = f"/v2/{PROJECT}/webhooks/{hook.json()['id']}"
    retry = client.post(f"{base}/deliveries/{WIDE}/retries", headers=headers(secret))
    assert retry.status_code == 404, retry.text
    for path in (f"{base}/deliveries", f"/v2/{PROJECT}/events"):
        for order in ("asc", "desc"):
            page = client.get(f"{path}?marker={WIDE}&sort_dir={order}", headers=headers(secret))
            assert page.status_code == 200, (path, order, page.text)
    replay = client.post(f"{base}/replays", json={"from_event_id": WIDE}, headers=headers(secret))
    assert replay.status_code == 202, replay.text
    assert replay.json()["queued"] == 0
