"""The Store protocol in SQL, shared by the SQLite and PostgreSQL backends."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any

from baton.core import serialization
from baton.core.errors import FenceLost, InvalidState
from baton.core.events import (
    RUN_CANCELLED,
    RUN_ENQUEUED,
    RUN_FAILED,
    RUN_RECOVERED,
    RUN_STARTED,
    RUN_SUCCEEDED,
    STEP_COMPLETED,
    CloudEvent,
    run_event,
)
from baton.store.flow import Claimed
from baton.store.records import (
    REDRIVABLE,
    RUN_COLUMNS,
    TERMINAL,
    EventRecord,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
    WorkerRecord,
    run_values,
    step_values,
)
from baton.store.sql.analytics import AnalyticsOps
from baton.store.sql.children import ChildOps
from baton.store.sql.flags import FlagOps
from baton.store.sql.flow import FlowOps, claim_rows
from baton.store.sql.forks import ForkOps
from baton.store.sql.payloads import (
    RUN_PAYLOADS,
    STEP_PAYLOADS,
    run_record,
    spill,
    spill_values,
    step_record,
)
from baton.store.sql.saga import SagaOps
from baton.store.sql.schedules import ScheduleOps
from baton.store.sql.text import (  # noqa: F401  (re-exported for the other modules)
    _ACTIVE,
    _CLAIMED_STATUS,
    _EVENT_INSERT,
    _READY,
    _RUN_INSERT,
    _RUN_SELECT,
    _STEP_FENCED_UPSERT,
    _STEP_ON_CONFLICT,
    _STEP_SELECT,
    _STEP_UPSERT,
    _UNCLAIMED_STATUS,
    _WAKE,
    Conn,
    _check_fence,
    _event_rows,
    _get,
    _insert_events,
)
from baton.store.sql.waits import WaitOps
from baton.store.sql.webhooks import WebhookOps
from baton.store.sql.writer import GroupCommitWriter, WriterPool


class SQLStore(
    WaitOps,
    ForkOps,
    FlowOps,
    ScheduleOps,
    ChildOps,
    SagaOps,
    FlagOps,
    AnalyticsOps,
    WebhookOps,
):
    """The Store protocol over SQL, shared by the SQLite and PostgreSQL backends.

    Writes are operations (functions of a connection) run by the backend's group-commit
    writer; reads go through `_read()`. SQL is written once, in the dialect both accept, with
    `?` placeholders; a backend's connection adapts what differs (see `store/postgres`).
    """

    location: str
    payload_threshold: int
    _writer: GroupCommitWriter | WriterPool

    def _read(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def write(self, op) -> Future:  # type: ignore[no-untyped-def]
        """Run `op(connection)` in the writer's next group commit."""
        return self._writer.submit(op)

    def commit_on_loop(self, loop: Any, on: bool = True) -> None:
        """Commit writes submitted from `loop` on it (see GroupCommitWriter.commit_on), where
        a commit is short enough to block a loop for (not across a network)."""
        commit_on = getattr(self._writer, "commit_on", None)
        if commit_on is not None and self.commits_locally:
            commit_on(loop, on)

    def at_next_sync(self, wake: Callable[[], Any]) -> None:
        """Call `wake` (quick, non-blocking) as the writer's next commit syncs, or at once
        when none comes (see GroupCommitWriter.at_next_sync)."""
        self._writer.at_next_sync(wake)

    commits_locally = True  # a commit is a local fsync, not a round trip to a server

    # -- runs ----------------------------------------------------------------------------
    def create_run(
        self, run: RunRecord, events: Sequence[CloudEvent]
    ) -> Future[tuple[RunRecord, bool]]:
        threshold = self.payload_threshold
        values, rows = run_values(run), _event_rows(events)
        # a run claimed at creation stays unclaimed if its queue has limits: only a claim admits
        insert = _RUN_INSERT if run.owner is None else _RUN_INSERT_UNLESS_LIMITED
        extra = () if run.owner is None else (run.queue,)

        def op(conn: Conn) -> tuple[RunRecord, bool]:
            stored = spill_values(conn, values, RUN_PAYLOADS, run.created_at, threshold)
            if conn.execute(insert, (*stored, *extra)).rowcount == 1:
                _insert_events(conn, rows)
                return run, True
            if extra and conn.execute(_QUEUE_LIMITED, extra).fetchone():
                record, unclaimed, unclaimed_rows = _unclaimed(run, events)
                stored = spill_values(conn, unclaimed, RUN_PAYLOADS, run.created_at, threshold)
                if conn.execute(_RUN_INSERT, stored).rowcount == 1:
                    _insert_events(conn, unclaimed_rows)
                    return record, True
            row = conn.execute(
                f"{_RUN_SELECT} WHERE idempotency_key = ?", (run.idempotency_key,)
            ).fetchone()
            return run_record(conn, row), False

        return self._writer.submit_start(op)

    def claim_runs(
        self,
        worker_id: str,
        queues: Sequence[str] | None,
        limit: int,
        now: float,
        lease: float,
        source: str,
        served: Sequence[tuple[str, str]] | None = None,
        alive_at: float | None = None,
    ) -> Future[list[RunRecord]]:
        where, params = _queue_filter(queues, served)

        def op(conn: Conn) -> list[RunRecord]:
            # alive, and known so: a sweep that judged this worker gone (from an older
            # heartbeat) leaves the row and these runs alone (PostgreSQL: it waits for the
            # row, then sees the heartbeat moved)
            if alive_at is not None and _beat(conn, worker_id, alive_at) != 1:
                return Claimed(unregistered=True)  # declared dead: it registers, then claims
            # one statement unless a due run is under a queue limit or a concurrency key
            rows, retry_at = self._claim_rows(conn, worker_id, where, params, limit, now, lease)
            runs = [run_record(conn, r) for r in rows]
            runs.sort(key=lambda r: (-r.priority, r.available_at, r.run_id))
            _insert_events(
                conn,
                _event_rows(
                    [
                        run_event(
                            RUN_STARTED, source, r, now, {"attempt": r.attempt, "worker": worker_id}
                        )
                        for r in runs
                    ]
                ),
            )
            return Claimed(runs, retry_at)

        return self._writer.submit(op)

    _claim_rows = staticmethod(claim_rows)

    def get_run(self, run_id: str) -> RunRecord | None:
        conn = self._read()
        row = conn.execute(f"{_RUN_SELECT} WHERE run_id = ?", (run_id,)).fetchone()
        return run_record(conn, row) if row else None

    def list_runs(
        self,
        status: Iterable[str] | None = None,
        workflow: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[RunRecord]:
        clauses, params = [], []
        if status:
            statuses = list(status)
            clauses.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params.extend(statuses)
        if workflow:
            clauses.append("workflow = ?")
            params.append(workflow)
        if before:
            clauses.append("run_id < ?")
            params.append(before)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        conn = self._read()
        rows = conn.execute(
            f"{_RUN_SELECT}{where} ORDER BY run_id DESC LIMIT ?", (*params, limit)
        ).fetchall()
        return [run_record(conn, r) for r in rows]

    def count_runs(self, status: Iterable[str] | None = None) -> dict[str, int]:
        rows = self._read().execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()
        wanted = set(status) if status else None
        return {s: n for s, n in rows if wanted is None or s in wanted}

    def queue_depths(self) -> dict[str, int]:
        rows = (
            self._read()
            .execute("SELECT queue, COUNT(*) FROM runs WHERE status = 'ENQUEUED' GROUP BY queue")
            .fetchall()
        )
        return {queue: n for queue, n in rows}

    _READY_RUNS = "runs"  # a backend may name the index to read

    def next_due(
        self, queues: Sequence[str] | None, served: Sequence[tuple[str, str]] | None = None
    ) -> float | None:
        where, params = _queue_filter(queues, served)
        row = (
            self._read()
            .execute(
                f"SELECT MIN(available_at) FROM {self._READY_RUNS} WHERE {_READY} {where}",
                params,
            )
            .fetchone()
        )
        return row[0] if row else None

    # -- owner-side transitions (fenced) ----------------------------------------------------
    def save_step(self, fence: int, step: StepRecord, events: Sequence[CloudEvent]) -> Future[None]:
        values = step_values(step)
        threshold, now = self.payload_threshold, step.finished_at or step.started_at

        rows = _event_rows(events)

        def op(conn: Conn) -> None:
            stored = spill_values(conn, values, STEP_PAYLOADS, now, threshold)
            # one statement: no row means a stale fence, or a checkpoint already written
            if conn.execute(_STEP_FENCED_UPSERT, (*stored, step.run_id, fence)).rowcount != 1:
                raise FenceLost(step.run_id, fence)
            _insert_events(conn, rows)

        return self._writer.submit(op)

    def retry_step_later(
        self, fence: int, step: StepRecord, available_at: float, events: Sequence[CloudEvent]
    ) -> Future[None]:
        values = step_values(step)
        now = step.finished_at or available_at
        threshold = self.payload_threshold

        rows = _event_rows(events)

        def op(conn: Conn) -> None:
            _check_fence(conn, step.run_id, fence)
            conn.execute(_STEP_UPSERT, spill_values(conn, values, STEP_PAYLOADS, now, threshold))
            conn.execute(
                f"UPDATE runs SET status={_UNCLAIMED_STATUS}, owner=NULL, lease_expires_at=NULL, "
                f"available_at=?, updated_at=? WHERE run_id=?",
                (available_at, now, step.run_id),
            )
            _insert_events(conn, rows)

        return self._writer.submit(op)

    def finish_run(
        self,
        run_id: str,
        fence: int,
        status: str,
        output: str | None,
        error: str | None,
        now: float,
        events: Sequence[CloudEvent],
        step: StepRecord | None = None,
    ) -> Future[None]:
        step_row = step_values(step) if step else None
        threshold = self.payload_threshold

        rows = _event_rows(events)

        def op(conn: Conn) -> None:
            done = conn.execute(
                "UPDATE runs SET status=?, output=?, error=?, owner=NULL, lease_expires_at=NULL, "
                "updated_at=?, finished_at=? WHERE run_id=? AND fence=? "
                "AND status IN ('RUNNING', 'WAITING', 'COMPENSATING') RETURNING parent_run_id",
                (status, spill(conn, output, now, threshold), error, now, now, run_id, fence),
            ).fetchall()
            if len(done) != 1:
                raise FenceLost(run_id, fence)
            if done[0][0] is not None:
                conn.execute(_WAKE, (now, done[0][0]))
            if step_row:
                conn.execute(
                    _STEP_UPSERT, spill_values(conn, step_row, STEP_PAYLOADS, now, threshold)
                )
            _insert_events(conn, rows)

        return self._writer.submit(op)

    def release_run(
        self, run_id: str, fence: int, now: float, events: Sequence[CloudEvent]
    ) -> Future[None]:
        rows = _event_rows(events)

        def op(conn: Conn) -> None:
            _check_fence(conn, run_id, fence)
            conn.execute(
                f"UPDATE runs SET status={_UNCLAIMED_STATUS}, owner=NULL, lease_expires_at=NULL, "
                f"updated_at=? WHERE run_id=?",
                (now, run_id),
            )
            _insert_events(conn, rows)

        return self._writer.submit(op)

    # -- operator-side transitions ---------------------------------------------------------
    def cancel_run(
        self, run_id: str, now: float, events: Sequence[CloudEvent]
    ) -> Future[RunRecord]:
        rows = _event_rows(events)

        def op(conn: Conn) -> RunRecord:
            run = _get(conn, run_id)
            if run.status in TERMINAL:
                raise InvalidState(run_id, run.status, "cancel")
            row = conn.execute(
                f"UPDATE runs SET status='CANCELLED', owner=NULL, lease_expires_at=NULL, "
                f"fence=fence+1, updated_at=?, finished_at=? WHERE run_id=? "
                f"RETURNING {', '.join(RUN_COLUMNS)}",
                (now, now, run_id),
            ).fetchone()
            _insert_events(conn, rows)
            _cancel_children(conn, run_id, now, events[0].source if events else "baton")
            if run.parent_run_id is not None:  # a parent waiting for this child looks again
                conn.execute(_WAKE, (now, run.parent_run_id))
            return run_record(conn, row)

        return self._writer.submit(op)

    def redrive_run(
        self, run_id: str, now: float, events: Sequence[CloudEvent]
    ) -> Future[RunRecord]:
        rows = _event_rows(events)

        def op(conn: Conn) -> RunRecord:
            run = _get(conn, run_id)
            if run.status not in REDRIVABLE:
                raise InvalidState(run_id, run.status, "redrive")
            conn.execute(
                "DELETE FROM steps WHERE run_id=? AND status != ?", (run_id, StepStatus.SUCCEEDED)
            )
            row = conn.execute(
                f"UPDATE runs SET status='ENQUEUED', owner=NULL, error=NULL, output=NULL, "
                f"available_at=?, updated_at=?, finished_at=NULL, "
                f"deadline_at=CASE WHEN timeout IS NULL THEN NULL ELSE ? + timeout END "
                f"WHERE run_id=? RETURNING {', '.join(RUN_COLUMNS)}",
                (now, now, now, run_id),
            ).fetchone()
            _insert_events(conn, rows)
            return run_record(conn, row)

        return self._writer.submit(op)

    def expire_deadlines(self, now: float, error: str, source: str) -> Future[list[RunRecord]]:
        def op(conn: Conn) -> list[RunRecord]:
            rows = conn.execute(
                f"UPDATE runs SET status='FAILED', owner=NULL, lease_expires_at=NULL, "
                f"fence=fence+1, error=?, "
                f"updated_at=?, finished_at=? WHERE deadline_at <= ? AND status NOT IN "
                f"({', '.join(repr(str(s)) for s in TERMINAL)}) "
                f"RETURNING {', '.join(RUN_COLUMNS)}",
                (error, now, now, now),
            ).fetchall()
            runs = [run_record(conn, r) for r in rows]
            for r in runs:  # a parent waiting for an expired child looks again
                if r.parent_run_id is not None:
                    conn.execute(_WAKE, (now, r.parent_run_id))
            _insert_events(
                conn,
                _event_rows(
                    [
                        run_event(RUN_FAILED, source, r, now, {"error": serialization.loads(error)})
                        for r in runs
                    ]
                ),
            )
            return runs

        return self._writer.submit(op)

    # -- steps ---------------------------------------------------------------------------
    def load_steps(self, run_id: str) -> list[StepRecord]:
        conn = self._read()
        rows = conn.execute(f"{_STEP_SELECT} WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
        return [step_record(conn, r) for r in rows]

    # -- workers -------------------------------------------------------------------------
    def register_worker(self, worker: WorkerRecord) -> Future[None]:
        def op(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO workers (worker_id, host, pid, process_started_at, "
                "started_at, heartbeat_at, versions) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (worker_id) DO UPDATE SET host=excluded.host, pid=excluded.pid, "
                "process_started_at=excluded.process_started_at, "
                "started_at=excluded.started_at, heartbeat_at=excluded.heartbeat_at, "
                "versions=excluded.versions",
                (
                    worker.worker_id,
                    worker.host,
                    worker.pid,
                    worker.process_started_at,
                    worker.started_at,
                    worker.heartbeat_at,
                    serialization.dumps(worker.versions),
                ),
            )

        return self._writer.submit(op)

    def heartbeat(self, worker_id: str, now: float) -> Future[bool]:
        def op(conn: Conn) -> bool:
            return _beat(conn, worker_id, now) == 1

        return self._writer.submit(op)

    def list_workers(self) -> list[WorkerRecord]:
        rows = (
            self._read()
            .execute(
                "SELECT worker_id, host, pid, process_started_at, started_at, heartbeat_at, "
                "versions FROM workers ORDER BY started_at"
            )
            .fetchall()
        )
        return [WorkerRecord(*r[:6], serialization.loads(r[6])) for r in rows]

    def owned_runs(self) -> dict[str, int]:
        """How many runs each worker holds (running or compensating), by worker id."""
        rows = (
            self._read()
            .execute(
                "SELECT owner, COUNT(*) FROM runs WHERE owner IS NOT NULL "
                "AND status IN ('RUNNING', 'COMPENSATING') GROUP BY owner"
            )
            .fetchall()
        )
        return {owner: n for owner, n in rows}

    def remove_worker(self, worker_id: str) -> Future[None]:
        return self._writer.submit(
            lambda conn: (
                conn.execute("DELETE FROM workers WHERE worker_id=?", (worker_id,)) and None
            )
        )

    def requeue_orphans(
        self, dead_workers: Sequence[WorkerRecord], now: float, source: str
    ) -> Future[list[RunRecord]]:
        seen = [(w.worker_id, w.heartbeat_at) for w in dead_workers]

        def op(conn: Conn) -> list[RunRecord]:
            for worker_id, heartbeat_at in seen:  # unless it has beaten since it was judged
                conn.execute(
                    "DELETE FROM workers WHERE worker_id=? AND heartbeat_at=?",
                    (worker_id, heartbeat_at),
                )
            rows = conn.execute(
                f"UPDATE runs SET status={_UNCLAIMED_STATUS}, owner=NULL, lease_expires_at=NULL, "
                f"updated_at=? WHERE status IN ('RUNNING', 'COMPENSATING') "
                f"AND owner IS NOT NULL AND owner NOT IN (SELECT worker_id FROM workers) "
                f"RETURNING {', '.join(RUN_COLUMNS)}",
                (now,),
            ).fetchall()
            runs = [run_record(conn, r) for r in rows]
            _insert_events(
                conn,
                _event_rows([run_event(RUN_RECOVERED, source, r, now) for r in runs]),
            )
            return runs

        return self._writer.submit(op)

    # -- events --------------------------------------------------------------------------
    def append_events(self, events: Sequence[CloudEvent]) -> Future[None]:
        """Append events that belong to no run (agent lifecycle, ...) to the event log."""
        rows = _event_rows(events)

        def op(conn: Conn) -> None:
            _insert_events(conn, rows)

        return self._writer.submit(op)

    def event_horizon(self) -> object:
        """A mark to pass to `event_settled` later. One writer commits in seq order here, so
        a gap in the event log's seq is never filled later."""
        return None

    def event_settled(self, horizon: object) -> bool:
        return True

    def ingest_events(self, events: Sequence[CloudEvent]) -> Future[int]:
        """Append events from outside in one transaction; an id already in the log is skipped,
        so a client may send a batch again. Resolves to the number appended."""
        rows = _event_rows(events)

        def op(conn: Conn) -> int:
            cur = conn.executemany(_EVENT_INGEST, rows)
            return max(0, cur.rowcount) if cur is not None else len(rows)

        return self._writer.submit(op)

    def list_events(
        self,
        run_id: str | None = None,
        type: str | None = None,
        correlation_id: str | None = None,
        after: int = 0,
        limit: int = 100,
        workflow: str | None = None,
        types: Sequence[str] | None = None,
    ) -> list[EventRecord]:
        clauses, params = ["seq > ?"], [after]
        filters = (("run_id", run_id), ("type", type))
        for column, value in filters:
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if types:
            clauses.append(f"type IN ({', '.join('?' for _ in types)})")
            params.extend(types)
        wanted = [*types] if types else []
        if type is not None:
            wanted.append(type)
        if wanted and not ROUTINE_TYPES.intersection(wanted):
            clauses.append(_TYPE_INDEXED)  # the index's condition, so that the planner uses it
        if workflow is not None:
            clauses.append("run_id IN (SELECT run_id FROM runs WHERE workflow = ?)")
            params.append(workflow)
        where = " AND ".join(clauses)
        if correlation_id is None:
            sql, args = f"{_EVENT_SELECT} WHERE {where}", params
        elif run_id is not None:
            sql, args = (
                f"{_EVENT_SELECT} WHERE {where} AND correlation_id = ?",
                [*params, correlation_id],
            )
        else:  # the index holds only events correlated otherwise than by their own run's id
            sql = (
                f"{_EVENT_SELECT} WHERE {where} AND correlation_id = ? AND {_CORRELATED} "
                f"UNION ALL {_EVENT_SELECT} WHERE {where} AND run_id = ? AND correlation_id = ?"
            )
            args = [*params, correlation_id, *params, correlation_id, correlation_id]
        rows = self._read().execute(f"{sql} ORDER BY seq LIMIT ?", (*args, limit)).fetchall()
        return [EventRecord(*r) for r in rows]

    def event_seq(self, event_id: str) -> int | None:
        """The seq of the logged event with this id, or None when there is none."""
        row = self._read().execute("SELECT seq FROM events WHERE id = ?", (event_id,)).fetchone()
        return None if row is None else int(row[0])

    def last_event_seq(self) -> int:
        """The highest seq in the event log, 0 when it is empty (on PostgreSQL a lower seq
        may still commit later: see store/tail.py)."""
        row = self._read().execute("SELECT MAX(seq) FROM events").fetchone()
        return 0 if row is None or row[0] is None else int(row[0])


_EVENT_INGEST = f"{_EVENT_INSERT} ON CONFLICT (id) DO NOTHING"
_EVENT_SELECT = (
    "SELECT seq, id, type, source, subject, time, correlation_id, run_id, data FROM events"
)
# the event types every run logs: the type index leaves them out (migration 5), as a query
# for them finds them densely in seq order
_ROUTINE = (RUN_ENQUEUED, RUN_STARTED, STEP_COMPLETED, RUN_SUCCEEDED)
ROUTINE_TYPES = frozenset(_ROUTINE)
# the condition of the events_type index, as it is there (the same list in the same order)
_TYPE_INDEXED = f"type NOT IN ({', '.join(repr(t) for t in _ROUTINE)})"
# the condition of the events_correlation index, spelled as it is there
_CORRELATED = "correlation_id IS NOT NULL AND (run_id IS NULL OR correlation_id != run_id)"
_QUEUE_LIMITED = (
    "SELECT 1 FROM queues WHERE name = ? AND (concurrency IS NOT NULL OR rate_limit IS NOT NULL)"
)
# one statement for the common start: inserted claimed unless its queue has limits (then
# nothing is inserted, and the run goes in unclaimed) or its idempotency key is taken
_RUN_INSERT_UNLESS_LIMITED = (
    f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) "
    f"SELECT {', '.join('?' for _ in RUN_COLUMNS)} WHERE NOT EXISTS ({_QUEUE_LIMITED}) "
    "ON CONFLICT (idempotency_key) DO NOTHING"
)


def _beat(conn: Conn, worker_id: str, now: float) -> int:
    """Heartbeat a worker's row; 0 when the row is gone (the worker was declared dead)."""
    return int(
        conn.execute(
            "UPDATE workers SET heartbeat_at=? WHERE worker_id=?", (now, worker_id)
        ).rowcount
    )


def _unclaimed(
    run: RunRecord, events: Sequence[CloudEvent]
) -> tuple[RunRecord, tuple, list[tuple]]:
    """The run as it is inserted when a queue limit forbids claiming it at creation."""
    record = dataclasses.replace(
        run, status=RunStatus.ENQUEUED, owner=None, fence=0, attempt=0, started_at=None
    )
    values = run_values(record)
    return record, values, _event_rows([e for e in events if e.type != RUN_STARTED])


def _queue_filter(
    queues: Sequence[str] | None, served: Sequence[tuple[str, str]] | None = None
) -> tuple[str, tuple[str, ...]]:
    """SQL that keeps runs of the given queues and (workflow, version) pairs."""
    where, params = "", ()
    if queues:
        where += f"AND queue IN ({', '.join('?' for _ in queues)}) "
        params += tuple(queues)
    if served is not None:
        where += f"AND (workflow, version) IN (VALUES {', '.join('(?, ?)' for _ in served)}) "
        params += tuple(x for pair in served for x in pair)
    return where, params


def _cancel_children(conn: Conn, parent: str, now: float, source: str) -> None:
    """Cancel every unfinished descendant of `parent`, in the same transaction (but for one
    that is COMPENSATING: undoing its steps is never cut short)."""
    pending = [parent]
    while pending:
        rows = conn.execute(
            f"UPDATE runs SET status='CANCELLED', owner=NULL, lease_expires_at=NULL, "
            f"fence=fence+1, updated_at=?, finished_at=? WHERE parent_run_id=? "
            f"AND status NOT IN ({', '.join(repr(str(s)) for s in TERMINAL)}, 'COMPENSATING') "
            f"RETURNING {', '.join(RUN_COLUMNS)}",
            (now, now, pending.pop()),
        ).fetchall()
        children = [RunRecord(*r) for r in rows]
        _insert_events(
            conn,
            _event_rows(
                [
                    run_event(RUN_CANCELLED, source, c, now, {"reason": "parent cancelled"})
                    for c in children
                ]
            ),
        )
        pending.extend(c.run_id for c in children)
