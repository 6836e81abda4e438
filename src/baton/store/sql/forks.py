"""Forking a run on SQLite: a new run that starts with a copy of another run's checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from baton.core.errors import StepNotFound
from baton.core.events import CloudEvent
from baton.store.records import RUN_COLUMNS, STEP_COLUMNS, RunRecord, StepStatus, run_values
from baton.store.sql.payloads import RUN_PAYLOADS, spill_values
from baton.store.sql.text import Conn, _event_rows, _get, _insert_events

# every column as is (large payloads stay shared references), under the new run's id;
# compensation records belong to the source's undo, not to its forward progress
_COPY_STEPS = (
    f"INSERT INTO steps ({', '.join(STEP_COLUMNS)}) "
    f"SELECT {', '.join('?' if c == 'run_id' else c for c in STEP_COLUMNS)} FROM steps "
    f"WHERE run_id = ? AND seq < ? AND status = '{StepStatus.SUCCEEDED}' "
    f"AND kind != 'compensation'"
)
_INSERT_RUN = (
    f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' for _ in RUN_COLUMNS)})"
)


def highest_step(conn: Conn, run_id: str) -> int:
    """The highest checkpoint number a run has recorded (0 when it has none)."""
    return conn.execute(
        "SELECT COALESCE(MAX(seq), 0) FROM steps WHERE run_id = ?", (run_id,)
    ).fetchone()[0]


class ForkOps:
    """Store calls for forking runs (mixed into SQLiteStore)."""

    _writer: Any
    payload_threshold: int

    def fork_run(
        self, run: RunRecord, from_step: int, events: Sequence[CloudEvent]
    ) -> Future[RunRecord]:
        """Insert `run`, a fork of the run `run.forked_from`, together with a copy of that
        run's SUCCEEDED checkpoints numbered below `from_step`, in one transaction.

        Raises RunNotFound for an unknown source, and StepNotFound unless
        1 <= from_step <= the source's highest recorded step + 1; nothing is written then.
        """
        source_id = run.forked_from
        if source_id is None:
            raise ValueError("fork_run needs run.forked_from, the id of the run to fork")
        values = run_values(run)
        threshold = self.payload_threshold
        rows = _event_rows(events)

        def op(conn: Conn) -> RunRecord:
            _get(conn, source_id)
            highest = highest_step(conn, source_id)
            if not 1 <= from_step <= highest + 1:
                raise StepNotFound(source_id, from_step, highest)
            stored = spill_values(conn, values, RUN_PAYLOADS, run.created_at, threshold)
            conn.execute(_INSERT_RUN, stored)
            conn.execute(_COPY_STEPS, (run.run_id, source_id, from_step))
            _insert_events(conn, rows)
            return run

        return self._writer.submit(op)
