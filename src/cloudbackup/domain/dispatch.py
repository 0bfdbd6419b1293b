"""How services hand work to workers: a tiny interface, called only after the commit.

Services never import Celery tasks; they get a ``Dispatcher``. A failed publish is not an error
for the caller: the row is already committed and the sweeper re-publishes it.
"""

from __future__ import annotations

from typing import Protocol


class Dispatcher(Protocol):
    def publish_backup(self, backup_id: str) -> bool:
        """Ask a worker to run the backup; return False if the broker could not be reached."""
        ...
