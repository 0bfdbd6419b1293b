"""Every operation of the spec's index (§1.9) is routed: it works or answers 501 with JSON.

The README's "Status of the v2 surface" table is checked against what the app really serves.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cloudbackup.api.controllers.not_implemented import (
    OPERATIONS,
    full_path,
    handlers,
    shape,
    unserved,
    working,
)
from factories.api import PROJECT, token

README = Path(__file__).resolve().parents[3] / "README.md"
IDS = {
    "backup_id": "0d95d699-d16b-11e4-93bd-c8e0eb190e3d",
    "restore_id": "e87e6f7d-d166-11e4-8689-c8e0eb190e3d",
    "cleanup_id": "2f8708b3-d16b-11e4-bc22-c8e0eb190e3d",
    "configuration_id": "7c8ee069-568f-4d5a-932f-fb2af86b5fd5",
    "agent_id": "8f135b4f-7a69-4b8a-947f-5e80d772fd97",
    "logfile_id": "a533a845-4279-4838-af13-276114e90234",
    "request_id": "16ce47f7-88b2-4983-8b1c-d4a82306ae87",
    "dependent_system": "storage/database",
}


def test_the_index_is_the_spec_s_61_operations():
    assert len(OPERATIONS) == 61
    assert len({op.id for op in OPERATIONS}) == 61
    assert len({(op.method, op.path) for op in OPERATIONS}) == 61
    groups = {re.sub(r"\d+$", "", op.id) for op in OPERATIONS}
    assert groups == {"B", "R", "C", "ER", "CF", "A", "V", "EV", "AC", "H", "S"}


def test_every_operation_has_a_route(client):
    app = client.app
    assert unserved(app) == []
    routes = handlers(app)
    for op in OPERATIONS:
        assert (op.method, shape(full_path(op))) in routes, op


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.id)
def test_every_operation_answers_without_405_or_500(client, db, operation):
    path = f"/v2/{PROJECT}" + re.sub(r"\{(\w+)\}", lambda m: IDS[m.group(1)], operation.path)
    response = client.request(
        operation.method,
        path,
        headers={"X-Auth-Token": token(db), "Content-Type": "application/json"},
        content=b"{}" if operation.method in ("POST", "PUT") else None,
    )
    assert response.status_code not in (405, 500), (operation, response.text)
    if response.status_code >= 400 and operation.id not in ("H1", "H2"):  # health: its own body
        assert response.json()["message"]
    if response.status_code == 501:
        assert operation.id in response.json()["message"]
        assert response.json()["errors"]


def readme_status() -> dict[str, str]:
    """Operation id -> the status the README's table gives it."""
    text = README.read_text()
    section = text.split("## Status of the v2 surface", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\w+) \| (\w+) \| `([^`]+)` \| ([^|]+) \|", section, re.MULTILINE)
    return {op_id: status.strip() for op_id, _, _, status in rows}


def test_the_readme_status_table_tells_the_truth(client):
    status = readme_status()
    assert sorted(status) == sorted(op.id for op in OPERATIONS), "README lists every operation"
    truth = working(client.app)
    wrong = [
        f"{op_id}: README says {status[op_id]!r} but it {'works' if works else 'answers 501'}"
        for op_id, works in truth.items()
        if status[op_id].startswith("works") != works
    ]
    assert wrong == [], "update README.md's 'Status of the v2 surface':\n" + "\n".join(wrong)


def test_operations_no_controller_serves_answer_501_with_json():
    """The catch-all, on an app that serves nothing of the index (a token-free bare app)."""
    from litestar import Litestar
    from litestar.testing import TestClient

    from cloudbackup.api.controllers.not_implemented import register_not_implemented

    app = register_not_implemented(Litestar(route_handlers=[]))
    assert unserved(app) == []
    assert not any(working(app).values())
    with TestClient(app=app) as bare:
        for op in OPERATIONS:
            path = f"/v2/{PROJECT}" + re.sub(r"\{(\w+)\}", lambda m: IDS[m.group(1)], op.path)
            response = bare.request(op.method, path)
            assert response.status_code == 501, (op, response.text)
            assert response.json() == {
                "message": f"{op.id} is not implemented by this service.",
                "errors": [
                    f"{op.method} /v2/{{project_id}}{op.path} is part of the Cloud Backup v2 API "
                    "but has not been built here yet; see the README's status of the v2 surface."
                ],
            }


def test_the_catch_all_never_shadows_a_served_operation(client):
    """Registering again on the full app adds nothing: served routes keep their handlers."""
    from cloudbackup.api.controllers.not_implemented import register_not_implemented

    before = {key: handler.fn for key, handler in handlers(client.app).items()}
    register_not_implemented(client.app)
    after = {key: handler.fn for key, handler in handlers(client.app).items()}
    assert after == before
