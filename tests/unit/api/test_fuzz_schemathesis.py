"""Property-based fuzzing of the whole HTTP API from its own OpenAPI document (schemathesis).

Every documented operation is called with generated input: schema-valid and schema-violating
data, with the ids of real resources and with made-up ones. For every response: no 5xx, the
status is documented, the content type and the body match the document; schema-violating input
is refused with a 4xx, and every operation that needs a token refuses a request without one.

Operations are read from the document itself, so new endpoints are fuzzed without a change here.
Examples per case: ``CLOUDBACKUP_FUZZ_EXAMPLES`` (default 20).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python import asgi

from cloudbackup.api.openapi import METHODS, REPORT_ON_503, SCHEMA_PATH, describe
from cloudbackup.queue.publishing import CeleryDispatcher
from cloudbackup.server import create_app
from cloudbackup.settings import load_settings
from factories.api import PROJECT, token
from factories.resources import every_resource

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("CLOUDBACKUP_FUZZ_EXAMPLES", "20"))
DOCUMENT = f"{SCHEMA_PATH}/openapi.json"


class _Unused:
    def publish(self, kind: str, resource_id: str, *, agent_id: str | None = None) -> bool:
        return True


def _cases() -> list[tuple[str, str]]:
    """(operation label, generation mode) for every documented operation; schema-violating
    input only where the document constrains something (a body or a query parameter)."""
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            load_settings(
                {
                    "CLOUDBACKUP_DATABASE_URL": f"sqlite:///{tmp}/unused.db",
                    "CLOUDBACKUP_BROKER_URL": "redis://127.0.0.1:1/0",
                    "CLOUDBACKUP_DATA_DIR": tmp,
                }
            ),
            dispatcher=_Unused(),
        )
        document = describe(app.openapi_schema.to_schema(), app)
    cases = []
    for path, item in document["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            label = f"{method.upper()} {path}"
            cases.append((label, "positive"))
            queries = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
            if "requestBody" in operation or queries:
                cases.append((label, "negative"))
    return cases


CASES = _cases()


@pytest.fixture
def target(settings, db):
    """The app on a fresh database, with one resource of each kind to aim real ids at."""
    app = create_app(settings, database=db, dispatcher=CeleryDispatcher.from_settings(settings))
    secret = token(db)
    with TestClient(app=app) as client:
        ids = every_resource(client, db, secret, PROJECT)
    yield app, secret, ids
    asgi.shutdown_lifespans()


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{m} {label}" for label, m in CASES])
def test_fuzz_operation(target, label, mode):
    app, secret, ids = target
    schema = schemathesis.openapi.from_asgi(DOCUMENT, app)
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the served document"
    generation = GenerationMode(mode)
    names = {p.name for p in operation.path_parameters}
    fixed = {name: ids[name] for name in names if name in ids}
    auth = {"X-Auth-Token": secret}
    aimed = operation.as_strategy(generation, path_parameters=fixed or None)
    cases = st.one_of(
        aimed,
        # Bodies that name real resources and a valid state get past the first checks.
        st.tuples(aimed, st.booleans(), st.booleans()).map(lambda t: _plausible(t[0], ids, *t[1:])),
        operation.as_strategy(
            generation, path_parameters={"project_id": PROJECT} if "project_id" in names else None
        ),
    )
    checks = [
        no_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        negative_data_rejection if generation is GenerationMode.NEGATIVE else ignored_auth,
    ]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case: Any) -> None:
        if generation is GenerationMode.NEGATIVE:
            assume(not _valid_on_the_wire(case))
        with asgi.get_client(app) as client:
            response = case.call(session=client, headers=auth)
            case.validate_response(response, checks=checks, headers=auth)

    run()


def _valid_on_the_wire(case: Any) -> bool:
    """A query value the generator made a one-item array or object (or an empty one) goes out
    as one plain value: the request the server sees is valid (``?host_machine_id=false`` for
    ``[false]``, ``?host_machine_id=UO%24e9`` for a one-key object), so it proves nothing."""
    query = case.query if isinstance(case.query, dict) else {}
    return any(isinstance(value, list | dict) and len(value) <= 1 for value in query.values())


START_STATES = ("start_requested", "start_scheduled")


def _plausible(case: Any, ids: dict[str, str], real_ids: bool, valid_state: bool) -> Any:
    """Point a generated body's ids at real resources, and its ``state`` at a start state."""
    if isinstance(case.body, dict):
        for key in list(case.body):
            name = "agent_id" if key == "destination_agent_id" else key
            if real_ids and name in ids:
                case.body[key] = ids[name]
        if valid_state and "state" in case.body:
            case.body["state"] = START_STATES[len(str(case.body["state"])) % 2]
    return case


@schemathesis.check
def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx, except the two the spec documents: 501 for an operation this service does not
    implement, and 503 from a health report while a dependency is down (no worker runs here)."""
    status = response.status_code
    allowed = status == 501 or (status == 503 and case.operation.path in REPORT_ON_503)
    assert status < 500 or allowed, f"{status}: {response.text[:500]}"
    return None
