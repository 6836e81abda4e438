"""Child runs on SQLite: starting them with their parent's checkpoint, and reading how they ended.

A child run is an ordinary run with `parent_run_id` set and the idempotency key
`<parent run id>:<seq>`. It is inserted in the same fenced transaction as the parent's `child`
checkpoint, so a replay, a crash or a stale worker never makes two. When it ends,
`finish_run` wakes its parent (`runs.wakeups`), which then reads its outcome here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from baton.core import serialization
from baton.core.errors import RunNotFound
from baton.core.events import CloudEvent
from baton.store.records import (
    STEP_COLUMNS,
    TERMINAL,
    RunRecord,
    StepRecord,
    StepStatus,
    run_values,
)
from baton.store.sql.payloads import RUN_PAYLOADS, resolve, run_record, spill_values
from baton.store.sql.text import (
    _RUN_INSERT,
    _RUN_SELECT,
    _STEP_UPSERT,
    Conn,
    _check_fence,
    _event_rows,
    _insert_events,
)
from baton.store.sql.waits import suspend

# (the parent's `child` checkpoint, the child run, the events of the child's creation)
ChildStart = tuple[StepRecord, RunRecord, Sequence[CloudEvent]]


def _row(step: StepRecord, **fields: Any) -> tuple:
    values = {c: getattr(step, c) for c in STEP_COLUMNS}
    values.update(fields)
    return tuple(values[c] for c in STEP_COLUMNS)


class ChildOps:
    """Store calls for child runs (mixed into SQLiteStore)."""

    _writer: Any
    _read: Any
    payload_threshold: int

    def start_children(self, fence: int, children: Sequence[ChildStart]) -> Future[list[str]]:
        """Insert each child run and its parent's `child` checkpoint (output: the child's run
        id) in one transaction, if the parent still holds `fence`. A child whose idempotency
        key exists already is not inserted again: its run id is recorded instead. Returns
        the children's run ids, in order."""
        threshold = self.payload_threshold
        prepared = [
            (step, run, run_values(run), _event_rows(events)) for step, run, events in children
        ]

        def op(conn: Conn) -> list[str]:
            ids: list[str] = []
            checked: set[str] = set()
            for step, run, values, rows in prepared:
                if step.run_id not in checked:
                    _check_fence(conn, step.run_id, fence)
                    checked.add(step.run_id)
                stored = spill_values(conn, values, RUN_PAYLOADS, run.created_at, threshold)
                if conn.execute(_RUN_INSERT, stored).rowcount == 1:
                    child_id = run.run_id
                    _insert_events(conn, rows)
                else:
                    found = conn.execute(
                        "SELECT run_id FROM runs WHERE idempotency_key = ?",
                        (run.idempotency_key,),
                    ).fetchone()
                    child_id = found[0]
                conn.execute(_STEP_UPSERT, _row(step, output=serialization.dumps(child_id)))
                ids.append(child_id)
            return ids

        return self._writer.submit(op)

    def await_children(
        self,
        run_id: str,
        fence: int,
        seen_wakeups: int,
        waiting: Sequence[StepRecord],
        children: Sequence[str],
        hold: bool,
        wake_at: float,
        now: float,
        describe: Callable[[RunRecord], str],
        events: Sequence[CloudEvent],
    ) -> Future[list[StepRecord | None]]:
        """For each child run `children[i]` of run `run_id` that has ended, its checkpoint
        `waiting[i]` records how: SUCCEEDED with the child's output, or FAILED with
        `describe(child)` as the error. When a child has not ended, or `hold` is set, the run
        is suspended until `wake_at` (or a wake-up), with the unfinished children's
        checkpoints WAITING, and `events` are appended. All in one transaction, if the run
        still holds `fence`. Returns the recorded checkpoints (outputs resolved), None for a
        child that has not ended."""
        rows = _event_rows(events)

        def op(conn: Conn) -> list[StepRecord | None]:
            _check_fence(conn, run_id, fence)
            out: list[StepRecord | None] = []
            for step, child_id in zip(waiting, children, strict=True):
                row = conn.execute(f"{_RUN_SELECT} WHERE run_id = ?", (child_id,)).fetchone()
                if row is None:
                    raise RunNotFound(child_id)
                child = RunRecord(*row)  # output left as stored: a large one stays shared
                if child.status not in TERMINAL:
                    conn.execute(_STEP_UPSERT, _row(step, status=StepStatus.WAITING))
                    out.append(None)
                    continue
                if child.status == "SUCCEEDED":
                    fields = {"status": StepStatus.SUCCEEDED, "output": child.output}
                else:
                    error = describe(run_record(conn, row))
                    fields = {"status": StepStatus.FAILED, "output": None, "error": error}
                values = _row(step, finished_at=now, **fields)
                conn.execute(_STEP_UPSERT, values)
                done = StepRecord(*values)
                done.output = resolve(conn, done.output)
                out.append(done)
            if hold or None in out:
                suspend(conn, run_id, fence, seen_wakeups, wake_at, now)
                _insert_events(conn, rows)
            return out

        return self._writer.submit(op)

    def list_children(self, run_id: str) -> list[RunRecord]:
        """The runs started by run `run_id` (not their descendants), oldest first."""
        conn = self._read()
        rows = conn.execute(
            f"{_RUN_SELECT} WHERE parent_run_id = ? ORDER BY created_at, run_id", (run_id,)
        ).fetchall()
        return [run_record(conn, r) for r in rows]
