"""Tenant isolation and RBAC, for every route of the app (read from `app.routes`, so an endpoint
added later is covered without touching this file).

Isolation: a token of project A never reaches project B. On B's paths it gets 404 `Not found.`;
on its own paths naming B's resources (in the path or in the body) it gets exactly the answer
an unknown id gets; and B's data is the same afterwards.

RBAC (spec §1.7, OQ-38): GET needs Read, POST Create (POSTs that report a result: Update;
managing webhooks, an extension: Delete, the admin's), PATCH/PUT Update, DELETE Delete; A9,
ping and health need no token. A role without the
permission gets 403 and changes nothing; a role with it never gets that 403. The most
permissive of a token's roles wins.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from litestar.routes import HTTPRoute

from factories.api import OTHER_PROJECT, PROJECT, headers, token
from factories.resources import every_resource

JSON_PATCH = "application/json-patch+json"
ROLE_MESSAGE = re.compile(
    r"Your role does not allow this operation \((\w+) permission required\)\."
)
PARAM = re.compile(r"{(\w+)}")

# Spec §1.7: POSTs that report a result need Update; these routes need no token at all.
REPORTS = re.compile(
    r"/(vault-encryption-requests|vault-password-verification-requests)/{request_id}$"
)
# Dismissing an anomaly releases a hold on backups: the delete permission (admin roles) only.
DISMISSALS = {("PATCH", "/v2/{project_id}/anomalies/{anomaly_id}")}
# Webhooks send the project's events to an outside address: only an admin manages them.
ADMIN_ONLY = re.compile(r"^/v2/{project_id}/webhooks")
# A drill schedule decides how often the service restores a whole backup: an admin sets it.
DRILL_SCHEDULE = "/v2/{project_id}/configurations/{configuration_id}/drill-schedule"
PUBLIC = {
    ("POST", "/v2/{project_id}/agents/tokens"),
    ("GET", "/v2/{project_id}/ping"),
    ("GET", "/v2/{project_id}/health"),
    ("GET", "/v2/{project_id}/health/{dependent_system}"),
}
ROLES: dict[tuple[str, ...], set[str]] = {
    ("identity:user-admin",): {"create", "read", "update", "delete"},
    ("admin",): {"create", "read", "update", "delete"},
    ("cloudbackup:admin",): {"create", "read", "update", "delete"},
    ("cloudbackup:creator",): {"create", "read", "update"},
    ("observer",): {"read"},
    ("cloudbackup:observer",): {"read"},
    ("observer", "cloudbackup:admin"): {"create", "read", "update", "delete"},
    ("admin", "cloudbackup:observer"): {"create", "read", "update", "delete"},
}
# Bodies that would succeed on one's own resources, so a refusal is about the resource.
PATCHES = {
    "backups": [{"op": "replace", "path": "/state", "value": "stop_requested"}],
    "restores": [{"op": "replace", "path": "/state", "value": "stop_requested"}],
    "cleanups": [{"op": "replace", "path": "/state", "value": "stop_requested"}],
    "configurations": [{"op": "replace", "path": "/name", "value": "Renamed"}],
    "agents": [{"op": "replace", "path": "/enabled", "value": False}],
    "logfiles": [{"op": "replace", "path": "/state", "value": "started"}],
    "anomalies": [{"op": "replace", "path": "/state", "value": "dismissed"}],
    "drills": [{"op": "replace", "path": "/state", "value": "stop_requested"}],
}


def operations(app) -> list[tuple[str, str]]:
    """(METHOD, path) of every operation of a project (OPTIONS and HEAD are Litestar's)."""
    found = set()
    for route in app.routes:
        if isinstance(route, HTTPRoute) and route.path_format.startswith("/v2/{project_id}"):
            for method in route.methods - {"OPTIONS", "HEAD"}:
                found.add((method, route.path_format))
    return sorted(found)


AGENT_WRITES = re.compile(r"/vault/objects/")


def required_permission(method: str, path: str) -> str | None:
    if (method, path) in PUBLIC:
        return None
    if (method, path) in {*DISMISSALS, ("PUT", DRILL_SCHEDULE)} or (
        method == "POST" and ADMIN_ONLY.search(path)
    ):
        return "delete"
    if method == "POST":
        return "update" if REPORTS.search(path) else "create"
    if method == "DELETE" and AGENT_WRITES.search(path):
        return "update"  # a remote agent writing its own vault (agents hold no delete)
    return {"GET": "read", "PATCH": "update", "PUT": "update", "DELETE": "delete"}[method]


def body_for(method: str, path: str, ids: dict[str, str]) -> tuple[Any, str]:
    """A request body that names the resources in ``ids``, and its content type."""
    if method == "PATCH":
        resource = [part for part in path.split("/") if part and "{" not in part][-1]
        return PATCHES.get(resource, [{"op": "replace", "path": "/x", "value": 1}]), JSON_PATCH
    if method not in ("POST", "PUT"):
        return None, "application/json"
    collection = path.rsplit("/", 1)[-1]
    bodies = {
        "backups": {"configuration_id": ids["configuration_id"], "state": "start_requested"},
        "configurations": {
            "agent_id": ids["agent_id"],
            "name": "n",
            "enabled": True,
            "schedule": None,
            "retention": {"days": 1},
            "inclusions": [{"type": "folder", "path": "/srv/"}],
            "exclusions": [],
            "notifications": [
                {"type": "email", "destination": "a@b.co", "on_success": True, "on_failure": True}
            ],
        },
        "restores": {
            "backup_id": ids["backup_id"],
            "destination_agent_id": ids["agent_id"],
            "destination_path": "/tmp/r/",
            "encrypted_password_hex": None,
            "inclusions": [],
            "exclusions": [],
        },
        "cleanups": {"agent_id": ids["agent_id"], "state": "start_requested"},
        "replays": {"from_event_id": "1"},
        "drill-schedule": {"every_hours": 24},
        "browse-requests": {
            "agent_id": ids["agent_id"],
            "encrypted_password_hex": None,
            "path": "/",
            "path_encoded": None,
        },
    }
    return bodies.get(collection, {}), "application/json"


def call(client, secret: str, method: str, path: str, ids: dict[str, str], body_ids=None):
    url = PARAM.sub(lambda m: ids.get(m.group(1), str(uuid.uuid4())), path)
    body, content_type = body_for(method, path, body_ids or ids)
    hdrs = {**headers(secret), "Content-Type": content_type}
    if body is None:
        return client.request(method, url, headers=hdrs)
    return client.request(method, url, json=body, headers=hdrs)


def answer(response) -> tuple[int, Any]:
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


def snapshot(client, secret: str, ids: dict[str, str], ops) -> dict[str, Any]:
    """Everything a project's reads show, to prove a refused request changed nothing."""
    seen = {}
    for method, path in ops:
        if method == "GET" and "health" not in path:
            url = PARAM.sub(lambda m: ids.get(m.group(1), "none"), path)
            response = client.get(url, headers=headers(secret))
            seen[url] = answer(response)
    return seen


@pytest.fixture
def tenants(client, db):
    a_secret, b_secret = token(db, PROJECT), token(db, OTHER_PROJECT)
    a = every_resource(client, db, a_secret, PROJECT)
    b = every_resource(client, db, b_secret, OTHER_PROJECT)
    return a_secret, a, b_secret, b


def test_every_route_is_covered_and_resources_are_real(client, tenants):
    a_secret, a, _, _ = tenants
    ops = operations(client.app)
    assert ("POST", "/v2/{project_id}/backups") in ops and len(ops) >= 20
    names = {name for _, path in ops for name in PARAM.findall(path)}
    unknown = names - set(a) - {"name"}
    assert not unknown, f"add a resource of kind {unknown} to factories.resources"
    for name, path in (
        ("backup_id", "backups"),
        ("agent_id", "agents"),
        ("configuration_id", "configurations"),
        ("restore_id", "restores"),
        ("cleanup_id", "cleanups"),
    ):
        got = client.get(f"/v2/{PROJECT}/{path}/{a[name]}", headers=headers(a_secret))
        assert got.status_code == 200, (name, got.text)


def test_a_token_of_one_project_learns_nothing_about_another(client, tenants):
    a_secret, _a, b_secret, b = tenants
    ops = operations(client.app)
    before = snapshot(client, b_secret, b, ops)
    # Ids of nothing; `dependent_system` names a dependency, not a tenant's resource.
    shared = {"dependent_system": b["dependent_system"]}
    unknown = {name: str(uuid.uuid4()) for name in b} | {"project_id": OTHER_PROJECT} | shared
    nowhere = {name: str(uuid.uuid4()) for name in b} | {"project_id": "330033"} | shared
    for method, path in ops:
        public = (method, path) in PUBLIC
        # 1. B's paths, with B's ids: the same answer as a project that does not exist.
        theirs = answer(call(client, a_secret, method, path, b))
        absent = answer(call(client, a_secret, method, path, nowhere))
        assert theirs[0] == absent[0], (method, path)
        assert _masked(theirs[1], b) == _masked(absent[1], nowhere), (method, path)
        if not public:
            assert theirs == (404, {"message": "Not found."}), (method, path, theirs)
        # 2. A's own paths naming B's resources (path and body): the answer of unknown ids.
        mixed = {**b, "project_id": PROJECT}
        fake = {**unknown, "project_id": PROJECT}
        named = answer(call(client, a_secret, method, path, mixed, body_ids=mixed))
        made_up = answer(call(client, a_secret, method, path, fake, body_ids=fake))
        if PARAM.sub("", path) != path.replace("{project_id}", "") or method in ("POST", "PUT"):
            assert named[0] == made_up[0], (method, path, named, made_up)
            assert _masked(named[1], b) == _masked(made_up[1], unknown), (method, path)
            if not public:
                assert named[0] not in range(200, 300), (method, path, named)
    assert snapshot(client, b_secret, b, ops) == before  # B's data did not change


def _masked(body: Any, ids: dict[str, str]) -> Any:
    """The body with the ids that were sent replaced by a marker (an error may echo the id)."""
    text = repr(body)
    for name, value in ids.items():
        if name != "dependent_system":
            text = text.replace(value, "<id>")
    return text


def test_rbac_matrix_for_every_operation(client, db, tenants):
    a_secret, a, _, _ = tenants
    ops = operations(client.app)
    tokens = {roles: _token(db, roles) for roles in ROLES}
    before = snapshot(client, a_secret, a, ops)
    allowed_calls = []
    for method, path in ops:
        needed = required_permission(method, path)
        if needed is None:
            for secret in tokens.values():
                assert call(client, secret, method, path, a).status_code != 403
            continue
        for roles, grants in ROLES.items():
            if needed in grants:
                allowed_calls.append((roles, method, path))
                continue
            response = call(client, tokens[roles], method, path, a)
            assert response.status_code == 403, (roles, method, path, response.text)
            assert response.json() == {
                "message": f"Your role does not allow this operation ({needed} permission required)."
            }
    assert snapshot(client, a_secret, a, ops) == before  # every refusal changed nothing
    for roles, method, path in allowed_calls:
        response = call(client, tokens[roles], method, path, a)
        assert response.status_code not in (401, 500), (roles, method, path, response.text)
        if response.status_code == 403:
            assert not ROLE_MESSAGE.match(response.json()["message"]), (roles, method, path)


def test_public_routes_need_no_token_and_nothing_else_works_without_one(client, tenants):
    _, a, _, _ = tenants
    for method, path in operations(client.app):
        url = PARAM.sub(lambda m: a.get(m.group(1), str(uuid.uuid4())), path)
        response = client.request(method, url)
        if (method, path) in PUBLIC:
            assert response.status_code != 401, (method, path)
        else:
            assert response.status_code == 401, (method, path, response.text)


def _token(db, roles: tuple[str, ...]) -> str:
    from cloudbackup.domain.auth import create_token

    with db.transaction() as session:
        secret, _ = create_token(session, PROJECT, list(roles))
    return secret
