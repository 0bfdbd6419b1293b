"""``cloudbackup agent register``: A1 with a new RSA key pair made on this host. The private
key, the agent's id and its password (from A1's answer) stay in the state folder."""

from __future__ import annotations

import httpx

from cloudbackup.agent.session import ApiRefused
from cloudbackup.agent.state import AgentIdentity, StateDir, StateError
from cloudbackup.client.host import new_key, registration

KEY_BITS = 3072


def register(
    url: str,
    project_id: str,
    token: str,
    name: str,
    state: StateDir,
    *,
    client: httpx.Client | None = None,
) -> AgentIdentity:
    """Register this host as agent ``name``; its identity, saved in ``state``."""
    if state.has_identity():
        raise StateError(f"{state.folder} already holds an agent: use another --state-dir")
    public_key, private_pem = new_key(KEY_BITS)
    body = registration(name, flavor="nova", region=None, addresses=[], public_key=public_key)
    http = client or httpx.Client(base_url=url, timeout=60.0)
    try:
        response = http.post(
            f"/v2/{project_id}/agents",
            json=body,
            headers={"X-Auth-Token": token, "Content-Type": "application/json"},
        )
    finally:
        if client is None:
            http.close()
    if response.status_code != 201:
        raise ApiRefused(response)
    answer = response.json()
    host = body["host"]
    identity = AgentIdentity(
        url=url.rstrip("/"),
        project_id=project_id,
        agent_id=str(answer["id"]),
        password=str(answer["password"]),
        name=name,
        version=str(body["version"]),
        fingerprint=str(host["fingerprint"]),
        os=dict(host["os"]),
        addresses=list(host["addresses"]),
    )
    state.save_identity(identity, private_pem)
    return identity
