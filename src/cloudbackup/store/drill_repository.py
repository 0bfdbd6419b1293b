"""Queries and conditional writes of restore drills: runs like the others (``RunRepository``)."""

from __future__ import annotations

from cloudbackup.store.repositories import RunRepository
from cloudbackup.store.tables import DRILL_ERRORS, DRILLS, Drill, DrillError


class DrillRepository(RunRepository[Drill, DrillError]):
    model = Drill
    table = DRILLS
    error_model = DrillError
    error_table = DRILL_ERRORS
    run_key = "drill_id"
    agent_key = "agent_id"
