"""Fault 5: two API processes and two workers under load; every count adds up exactly.

Clients start backups through both API processes at once (some retried with the same
Idempotency-Key through the other process, some refused with 409 because their configuration
already runs). Some configurations miss a path (completed_with_errors), some agents have a broken
vault (failed). Afterwards: one row per distinct 201, none for a 409; every row final; completed
+ completed_with_errors + failed = created, split exactly as the set-up dictates; each backup
entered each state once.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa

from cloudbackup.store.tables import Backup
from factories.api import headers, token
from factories.private_services import ApiProcess
from factories.trees import make_tree

pytestmark = pytest.mark.slow


def test_created_completed_and_failed_add_up_with_two_apis_and_two_workers(stack, tmp_path):
    tree = make_tree(tmp_path / "src", files=8, with_excluded=False)
    kinds = ["ok"] * 12 + ["missing"] * 4 + ["broken"] * 4
    configs = []
    for kind in kinds:
        config = stack.configuration(tree.root)
        if kind == "missing":
            with stack.db.transaction() as session:
                config = session.merge(config)
                config.inclusions = [*config.inclusions, {"type": "folder", "path": "/no/such/"}]
        if kind == "broken":  # a file where the agent's vault folder must go
            with stack.db.transaction() as session:
                vault_id = session.execute(
                    sa.text("SELECT vault_id FROM agents WHERE id = :id"), {"id": config.agent_id}
                ).scalar_one()
            vault = stack.settings.resolved_vault_path / vault_id
            vault.parent.mkdir(parents=True, exist_ok=True)
            vault.write_bytes(b"not a vault")
        configs.append((config.id, kind))
    kind_of = dict(configs)

    secret = token(stack.db)
    stack.worker("w1", concurrency=2)
    stack.worker("w2", concurrency=2)
    stack.beat()
    apis = [ApiProcess(stack.env, tmp_path / f"api{i}.log").start() for i in range(2)]
    stack.processes.extend(apis)

    rng = random.Random(4)
    plan = [(rng.choice(configs)[0], uuid.uuid4().hex) for _ in range(90)]

    def start(item: tuple[str, str]) -> list[tuple[int, dict]]:
        configuration_id, key = item
        answers = []
        with httpx.Client(timeout=60) as client:
            # The same request through both processes: a client retrying after a lost answer.
            for api in rng.sample(apis, 2):
                response = client.post(
                    f"{api.base_url}/v2/110011/backups",
                    json={"configuration_id": configuration_id, "state": "start_requested"},
                    headers={**headers(secret), "Idempotency-Key": key},
                )
                answers.append((response.status_code, response.json()))
        return answers

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(start, plan))

    statuses = Counter(status for answers in results for status, _ in answers)
    assert set(statuses) <= {201, 409}, statuses
    created: dict[str, str] = {}
    for (configuration_id, _), answers in zip(plan, results, strict=True):
        ids = {body["id"] for status, body in answers if status == 201}
        assert len(ids) <= 1  # a retry with the same key never made a second backup
        created.update({backup_id: configuration_id for backup_id in ids})
    assert created, statuses

    finals = [stack.wait(backup_id, timeout=240) for backup_id in created]
    with stack.db.transaction() as session:
        rows = session.execute(sa.select(Backup.id, Backup.state)).all()
    assert sorted(r.id for r in rows) == sorted(created)  # one row per 201, none per 409

    states = Counter(row.state for row in finals)
    expected = Counter(
        {"ok": "completed", "missing": "completed_with_errors", "broken": "failed"}[
            kind_of[configuration_id]
        ]
        for configuration_id in created.values()
    )
    assert states == expected, stack.logs()
    assert sum(states.values()) == len(created)
    for row in finals:
        events = stack.events(row.id)
        final_event = "backup_failed" if row.state == "failed" else "backup_completed"
        assert events[:2] == ["backup_start_request", "backup_queued"], events
        assert events[-1] == final_event and len(set(events)) == len(events), events
