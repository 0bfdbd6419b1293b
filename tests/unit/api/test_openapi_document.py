"""The OpenAPI document at /schema/openapi.json: public, and it describes what handlers that read
raw bodies really accept."""

from __future__ import annotations

PATH = "/schema/openapi.json"


def test_the_document_is_served_without_a_token(client):
    response = client.get(PATH)
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


def test_request_bodies_errors_and_security_are_described(client):
    doc = client.get(PATH).json()
    paths = doc["paths"]
    schemas = doc["components"]["schemas"]

    start = paths["/v2/{project_id}/backups"]["post"]
    body = start["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/RequestStartBackup"}
    assert schemas["RequestStartBackup"]["required"] == ["configuration_id", "state"]
    assert "Idempotency-Key" in [p["name"] for p in start["parameters"]]
    assert set(start["responses"]) >= {"201", "400", "401", "403", "404", "409", "413", "503"}
    error = start["responses"]["400"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}
    assert schemas["ErrorBody"]["required"] == ["message"]

    patch = paths["/v2/{project_id}/backups/{backup_id}"]["patch"]["requestBody"]["content"]
    assert list(patch) == ["application/json-patch+json"]
    assert patch["application/json-patch+json"]["schema"]["type"] == "array"
    assert "requestBody" not in paths["/v2/{project_id}/backups"]["get"]

    login = paths["/v2/{project_id}/agents/tokens"]["post"]
    assert login["security"] == []  # A9 needs no token
    assert "Idempotency-Key" not in [p["name"] for p in login.get("parameters", [])]
    assert doc["security"] == [{"XAuthToken": []}]
    assert doc["components"]["securitySchemes"]["XAuthToken"]["name"] == "X-Auth-Token"


def test_only_the_json_api_is_documented(client):
    paths = client.get(PATH).json()["paths"]
    assert all(path == "/" or path.startswith("/v2/") for path in paths)
