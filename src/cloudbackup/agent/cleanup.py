"""A cleanup handed to this agent: forget exactly the snapshots the server listed (it decided
them: retention, restorable backups, anomaly holds), delete the checkpoints it listed as stale,
prune what no snapshot or remaining checkpoint needs and verify a sample, all under the vault's
cleanup lock, reported through C4 as a hosted worker would."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from cloudbackup.agent.host_run import VaultRun
from cloudbackup.agent.reports import StopRequested, Superseded, replace
from cloudbackup.engine import (
    PruneResult,
    Stopped,
    VaultError,
    VaultLocked,
    VerifyReport,
    delete_checkpoint,
    forget,
    prune,
    verify,
)

log = logging.getLogger("cloudbackup.agent")

# The lock kind the server asks for before it deletes a vault object for this agent.
CLEANUP_LOCK = "cleanup"
DAMAGE_REASON = "vault_validation_failed"
DAMAGE_TYPE = "file_missing_blocks"


class HostCleanup(VaultRun):
    """One handed-over cleanup of this agent's vault."""

    noun = "cleanup"
    forgotten: Sequence[int] = ()
    bytes_before = 0

    def counters(self) -> list[dict[str, Any]]:
        return [
            replace("/bytes_before", self.bytes_before),
            replace("/snapshot_ids", sorted(self.forgotten)),
        ]

    def work(self) -> str:
        self.enter("in_progress")
        try:
            with self.vault.lock(CLEANUP_LOCK, exclusive=True):
                return self._maintain()
        except (Stopped, StopRequested, Superseded):
            raise
        except Exception as exc:
            return self._failed(exc)

    def _maintain(self) -> str:
        wanted = [int(snapshot_id) for snapshot_id in self.item.get("forget") or []]
        self.forgotten = forget(self.vault, wanted).removed if wanted else []
        for key in self.item.get("delete_checkpoints") or []:
            delete_checkpoint(self.vault, str(key))
        fraction = float(self.item.get("verify_fraction") or 0)
        pruned: PruneResult | None
        try:
            pruned = prune(
                self.vault, on_progress=lambda _: self.check(), should_stop=self.should_stop
            )
        except VaultLocked:
            raise
        except VaultError:
            if fraction <= 0:
                raise
            log.warning("cleanup %s: the vault is damaged, nothing pruned", self.item["id"])
            pruned = None
        if pruned is not None:
            self.bytes_before = pruned.bytes_before
        report: VerifyReport | None = None
        if fraction > 0:
            report = verify(
                self.vault,
                sample_fraction=min(fraction, 1.0),
                on_progress=lambda _: self.check(),
                should_stop=self.should_stop,
            )
        return self._complete(pruned, report)

    def _complete(self, pruned: PruneResult | None, report: VerifyReport | None) -> str:
        self._stop_beat()
        damaged = [] if report is None else report.damaged
        files = sorted({(f.snapshot_id, f.path) for chunk in damaged for f in chunk.files})
        operations = [
            replace("/bytes_before", pruned.bytes_before if pruned else 0),
            replace("/bytes_after", pruned.bytes_after if pruned else 0),
            replace("/snapshot_ids", sorted(set(self.forgotten) | {s for s, _ in files})),
        ]
        if not files:
            return self.end("completed", operations)
        errors = {
            "count": len(files),
            "reason": DAMAGE_REASON,
            "diagnostics": None,
            "list": [
                {"index": index, "path": path, "type": DAMAGE_TYPE}
                for index, (_, path) in enumerate(files)
            ],
        }
        return self.end("completed_with_errors", [*operations, replace("/errors", errors)])

    def _failed(self, exc: Exception) -> str:
        """C4 keeps a cleanup's diagnostics null: the reason names the log's reference."""
        self._stop_beat()
        if isinstance(exc, VaultLocked):
            reason = "vault_locked_by_another_cleanup"
        else:
            reference = uuid.uuid4().hex[:12]
            log.exception("cleanup %s failed (reference %s)", self.item.get("id"), reference)
            reason = f"cleanup_failed: {type(exc).__name__} (agent log reference {reference})"
        errors = {"count": 0, "reason": reason, "diagnostics": None, "list": []}
        return self.end("failed", [*self.counters(), replace("/errors", errors)])
