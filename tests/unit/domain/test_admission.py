"""The admission gate (limits, pauses, hand-offs) and the gate around one delivered run,
in-process on SQLite."""

from __future__ import annotations

import msgspec
import pytest
import sqlalchemy as sa

from cloudbackup import logs
from cloudbackup.domain import admission
from cloudbackup.domain.backups import BackupService
from cloudbackup.store.tables import RUN_SLOTS, Backup
from factories import rows


def _starts(db, agent, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        config = rows.configuration(db, agent)
        ids.append(BackupService(db).start(agent.project_id, config.id, "start_requested", None).id)
    return ids


def _finish(db, backup_id: str) -> None:
    with db.transaction() as session:
        session.execute(sa.update(Backup).where(Backup.id == backup_id).values(state="completed"))


def test_at_most_n_running_per_agent_the_rest_wait_visibly_and_are_handed_on(db, settings):
    limited = msgspec.structs.replace(settings, max_running_per_agent=1)
    agent = rows.agent(db)
    first, second, third = _starts(db, agent, 3)
    assert admission.admit(db, limited, first, "q").run
    waiting = admission.admit(db, limited, second, "q")
    assert not waiting.run and waiting.reason == f"agent {agent.id} already runs its limit of 1"
    assert not admission.admit(db, limited, third, "q").run
    # Another agent of the same project is not held back.
    assert admission.admit(db, limited, _starts(db, rows.agent(db), 1)[0], "q").run
    with db.transaction() as session:
        slots = dict(session.execute(sa.select(RUN_SLOTS.c.backup_id, RUN_SLOTS.c.state)).all())
    assert (slots[first], slots[second], slots[third]) == ("running", "waiting", "waiting")

    assert admission.release(db, first) == []  # not final yet: keeps its slot
    _finish(db, first)
    handed = admission.release(db, first)
    assert [w.backup_id for w in handed][:2] == [second, third]  # oldest first
    assert admission.admit(db, limited, second, "q").run
    assert not admission.admit(db, limited, third, "q").run


def test_project_limit_counts_every_agent_of_the_project(db, settings):
    limited = msgspec.structs.replace(settings, max_running_per_project=2, max_running_per_agent=0)
    one, two = rows.agent(db), rows.agent(db)
    a = _starts(db, one, 2)
    b = _starts(db, two, 1)
    other_project = _starts(db, rows.agent(db, project_id="220022"), 1)
    assert admission.admit(db, limited, a[0], "q").run
    assert admission.admit(db, limited, a[1], "q").run
    blocked = admission.admit(db, limited, b[0], "q")
    assert blocked.reason == f"project {one.project_id} already runs its limit of 2"
    assert admission.admit(db, limited, other_project[0], "q").run


def test_paused_queue_and_queue_concurrency(db, settings):
    from cloudbackup.store.tables import QUEUE_SETTINGS

    agent = rows.agent(db)
    ids = _starts(db, agent, 3)
    with db.transaction() as session:
        session.execute(sa.insert(QUEUE_SETTINGS).values(queue="p", paused=True))
        session.execute(sa.insert(QUEUE_SETTINGS).values(queue="c", concurrency=1))
    assert admission.admit(db, settings, ids[0], "p").reason == "queue p is paused"
    assert admission.admit(db, settings, ids[1], "c").run
    assert (
        admission.admit(db, settings, ids[2], "c").reason == "queue c already runs its limit of 1"
    )
    assert [w.backup_id for w in admission.waiting_in(db, "c")] == [ids[2]]
    assert admission.waiting_in(db, "p") == []  # a paused queue hands nothing on


def test_started_runs_pass_the_gate_and_finished_slots_are_forgotten(db, settings):
    limited = msgspec.structs.replace(settings, max_running_per_agent=1)
    agent = rows.agent(db)
    first, second = _starts(db, agent, 2)
    assert admission.admit(db, limited, first, "q").run
    with db.transaction() as session:
        session.execute(sa.update(Backup).where(Backup.id == second).values(state="in_progress"))
    # A re-drive of a started run is never held back (it already holds its slot, or needs none).
    assert admission.admit(db, limited, second, "q").run
    _finish(db, first)
    assert admission.forget_finished_slots(db) == 1
    assert admission.admit(db, limited, "no-such-backup", "q").run


@pytest.fixture(autouse=True)
def _forget_log_ids():
    """``run_gated`` binds the run's ids to the log context, as in a task: unbind them after."""
    yield
    logs.clear()


class Router:
    """The queue router of these tests: ``pinned`` agents have their own queue ``own-<id>``."""

    def __init__(self, *pinned: str) -> None:
        self.pinned = set(pinned)
        self.published: list[tuple[str, str]] = []

    def delivery_queue(self, delivered_to: str | None) -> str:
        return delivered_to or "manual"

    def own_queue(self, queue: str, agent_id: str | None) -> str | None:
        return f"own-{agent_id}" if agent_id in self.pinned and queue == "manual" else None

    def publish_to(self, queue: str, kind: str, resource_id: str, agent_id: str | None = None):
        self.published.append((queue, resource_id))
        return True


def test_run_gated_forwards_holds_back_runs_and_hands_on(db, settings):
    limited = msgspec.structs.replace(settings, max_running_per_agent=1)
    agent = rows.agent(db)
    first, second = _starts(db, agent, 2)
    ran: list[str] = []

    def execute(db, settings, backup_id: str) -> str:
        ran.append(backup_id)
        if backup_id == first:  # the first run, still running, holds the agent's one slot
            held = admission.run_gated(
                db, settings, router, second, delivered_to=None, agent_hint=None, execute=execute
            )
            assert held == "waiting"
            _finish(db, first)
        return "completed"

    pinned = Router(agent.id)
    forwarded = admission.run_gated(
        db, limited, pinned, first, delivered_to=None, agent_hint=agent.id, execute=execute
    )
    assert forwarded == "forwarded" and pinned.published == [(f"own-{agent.id}", first)]

    router = Router()
    outcome = admission.run_gated(
        db, limited, router, first, delivered_to="manual", agent_hint=agent.id, execute=execute
    )
    assert outcome == "completed"
    assert ran == [first]  # the second waited...
    assert router.published == [("manual", second)]  # ...and was handed on when the first ended


def test_a_project_has_a_running_cap_by_default():
    """One tenant cannot fill every shared worker unless the operator says so."""
    from cloudbackup.settings import Settings

    assert Settings().max_running_per_project == 8
