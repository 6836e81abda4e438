"""Sagas on SQLite: turning a run COMPENSATING when it fails or is cancelled, and resuming a
compensation that went DEAD.

A run has something to undo when it has a SUCCEEDED checkpoint of kind 'step' whose `input` is
kept (only steps that declare a compensation keep it). The decision is taken inside the same
transaction as the change, so it sees every checkpoint committed before it. Turning a run
COMPENSATING bumps its fence (a worker still executing it loses ownership and records nothing
more), drops its deadline (undoing is not cut short), and makes it claimable at once; a claimed
COMPENSATING run stays COMPENSATING (see `_CLAIMED_STATUS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from baton.core import serialization
from baton.core.errors import InvalidState
from baton.core.events import CloudEvent
from baton.store.records import (
    RUN_COLUMNS,
    TERMINAL,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
    step_values,
)
from baton.store.sql.payloads import STEP_PAYLOADS, run_record, spill_values
from baton.store.sql.text import (
    _STEP_UPSERT,
    _WAKE,
    Conn,
    _check_fence,
    _event_rows,
    _get,
    _insert_events,
)

_COMPENSABLE = (
    "SELECT 1 FROM steps WHERE run_id = ? AND kind = 'step' "
    f"AND status = '{StepStatus.SUCCEEDED}' AND input IS NOT NULL LIMIT 1"
)
_COMPENSATING = (
    "UPDATE runs SET status='COMPENSATING', error=?, owner=NULL, lease_expires_at=NULL, "
    "fence=fence+1, available_at=?, deadline_at=NULL, updated_at=? WHERE run_id=? "
    f"RETURNING {', '.join(RUN_COLUMNS)}"
)


def compensable(conn: Conn, run_id: str) -> bool:
    """Whether the run has a completed step with a compensation."""
    return conn.execute(_COMPENSABLE, (run_id,)).fetchone() is not None


def start_compensating(conn: Conn, run_id: str, error: str | None, now: float) -> RunRecord:
    row = conn.execute(_COMPENSATING, (error, now, now, run_id)).fetchone()
    return run_record(conn, row)


class SagaOps:
    """Store calls for sagas (mixed into SQLiteStore)."""

    _writer: Any
    payload_threshold: int

    def fail_run(
        self,
        run_id: str,
        fence: int,
        status: str,
        error: str,
        now: float,
        events: Mapping[str, Sequence[CloudEvent]],
        step: StepRecord | None = None,
    ) -> Future[str]:
        """End a run that failed for good as `status` (FAILED or DEAD) with `error` and
        events["ended"], or, when it has completed steps with compensations, turn it
        COMPENSATING (error kept, fence bumped, claimable now) with events["compensating"].
        `step`, the failed step's checkpoint, is written either way. Fenced; returns the
        run's new status."""
        step_row = step_values(step) if step else None
        threshold = self.payload_threshold
        rows = {k: _event_rows(v) for k, v in events.items()}

        def op(conn: Conn) -> str:
            _check_fence(conn, run_id, fence)
            if step_row:
                conn.execute(
                    _STEP_UPSERT, spill_values(conn, step_row, STEP_PAYLOADS, now, threshold)
                )
            if compensable(conn, run_id):
                start_compensating(conn, run_id, error, now)
                _insert_events(conn, rows.get("compensating", ()))
                return RunStatus.COMPENSATING
            parent = conn.execute(
                "UPDATE runs SET status=?, output=NULL, error=?, owner=NULL, "
                "lease_expires_at=NULL, updated_at=?, finished_at=? WHERE run_id=? "
                "RETURNING parent_run_id",
                (status, error, now, now, run_id),
            ).fetchone()[0]
            if parent is not None:
                conn.execute(_WAKE, (now, parent))
            _insert_events(conn, rows.get("ended", ()))
            return status

        return self._writer.submit(op)

    def cancel_or_compensate(
        self,
        run_id: str,
        now: float,
        error: str,
        events: Mapping[str, Sequence[CloudEvent]],
    ) -> Future[RunRecord]:
        """Cancel a run that has not ended: CANCELLED with events["cancelled"], or, when it has
        completed steps with compensations, COMPENSATING (with `error`, fence bumped,
        claimable now) with events["compensating"]. Its unfinished child runs are cancelled
        either way. InvalidState for a run that has ended or is already COMPENSATING."""
        rows = {k: _event_rows(v) for k, v in events.items()}
        source = next((e.source for v in events.values() for e in v), "baton")

        def op(conn: Conn) -> RunRecord:
            # imported here: the backend module imports this one for its base class
            from baton.store.sql.base import _cancel_children

            run = _get(conn, run_id)
            if run.status in TERMINAL or run.status == RunStatus.COMPENSATING:
                raise InvalidState(run_id, run.status, "cancel")
            if compensable(conn, run_id):
                out = start_compensating(conn, run_id, error, now)
                _insert_events(conn, rows.get("compensating", ()))
            else:
                row = conn.execute(
                    f"UPDATE runs SET status='CANCELLED', owner=NULL, lease_expires_at=NULL, "
                    f"fence=fence+1, updated_at=?, finished_at=? WHERE run_id=? "
                    f"RETURNING {', '.join(RUN_COLUMNS)}",
                    (now, now, run_id),
                ).fetchone()
                out = run_record(conn, row)
                _insert_events(conn, rows.get("cancelled", ()))
                if run.parent_run_id is not None:  # a parent waiting for this child looks again
                    conn.execute(_WAKE, (now, run.parent_run_id))
            _cancel_children(conn, run_id, now, source)
            return out

        return self._writer.submit(op)

    def redrive_compensation(
        self, run_id: str, now: float, events: Sequence[CloudEvent]
    ) -> Future[RunRecord | None]:
        """Resume the compensation of a DEAD run whose compensation failed: the run turns
        COMPENSATING again, claimable now, with its original error back, and the failed
        compensation starts over with fresh attempts (completed ones are not run again).
        Returns None, changing nothing, for any other run (RunNotFound for an unknown one)."""
        rows = _event_rows(events)

        def op(conn: Conn) -> RunRecord | None:
            run = _get(conn, run_id)
            if run.status != RunStatus.DEAD:
                return None
            marks = conn.execute(
                "SELECT COUNT(*) FROM steps WHERE run_id = ? AND kind = 'compensation'", (run_id,)
            ).fetchone()[0]
            if not marks:
                return None
            conn.execute(
                "DELETE FROM steps WHERE run_id = ? AND kind = 'compensation' AND status != ?",
                (run_id, StepStatus.SUCCEEDED),
            )
            doc = serialization.loads(run.error) if run.error else None
            cause = doc.get("cause") if isinstance(doc, dict) else None
            error = serialization.dumps(cause) if cause is not None else run.error
            row = conn.execute(
                f"UPDATE runs SET status='COMPENSATING', owner=NULL, lease_expires_at=NULL, "
                f"error=?, output=NULL, available_at=?, updated_at=?, finished_at=NULL, "
                f"deadline_at=NULL WHERE run_id=? RETURNING {', '.join(RUN_COLUMNS)}",
                (error, now, now, run_id),
            ).fetchone()
            _insert_events(conn, rows)
            return run_record(conn, row)

        return self._writer.submit(op)
