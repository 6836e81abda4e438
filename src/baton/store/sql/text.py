"""SQL text and small helpers shared by the SQL store's modules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from baton.core import serialization
from baton.core.errors import FenceLost, RunNotFound
from baton.core.events import CloudEvent
from baton.store.records import RUN_COLUMNS, STEP_COLUMNS, RunRecord, RunStatus


class Conn(Protocol):
    """What operations need of a connection: `sqlite3.Connection`, or the PostgreSQL adapter."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Any: ...


_RUN_SELECT = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
_RUN_INSERT = (
    f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in RUN_COLUMNS)}) ON CONFLICT (idempotency_key) DO NOTHING"
)
_STEP_SELECT = f"SELECT {', '.join(STEP_COLUMNS)} FROM steps"
_STEP_ON_CONFLICT = (
    "ON CONFLICT (run_id, seq) DO UPDATE SET "
    "name=excluded.name, args_hash=excluded.args_hash, status=excluded.status, "
    "attempts=excluded.attempts, finished_at=excluded.finished_at, output=excluded.output, "
    "error=excluded.error, written_by=excluded.written_by, kind=excluded.kind, "
    "input=excluded.input "
    "WHERE steps.status != 'SUCCEEDED'"  # a finished checkpoint is never rewritten
)
_STEP_UPSERT = (
    f"INSERT INTO steps ({', '.join(STEP_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in STEP_COLUMNS)}) {_STEP_ON_CONFLICT}"
)
# the same, written only while the writer still holds the run (same fence, still active)
_STEP_FENCED_UPSERT = (
    f"INSERT INTO steps ({', '.join(STEP_COLUMNS)}) "
    f"SELECT {', '.join('?' for _ in STEP_COLUMNS)} WHERE EXISTS (SELECT 1 FROM runs "
    f"WHERE run_id = ? AND fence = ? AND status IN ('RUNNING', 'WAITING', 'COMPENSATING')) "
    f"{_STEP_ON_CONFLICT}"
)
_EVENT_INSERT = (
    "INSERT INTO events (id, type, source, subject, time, correlation_id, run_id, data) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_ACTIVE = (RunStatus.RUNNING, RunStatus.WAITING, RunStatus.COMPENSATING)
# a run any worker may claim once its available_at has come
_READY = "owner IS NULL AND status IN ('ENQUEUED', 'WAITING', 'COMPENSATING')"
# a claimed run runs, unless it is undoing its steps
_CLAIMED_STATUS = "CASE WHEN status = 'COMPENSATING' THEN 'COMPENSATING' ELSE 'RUNNING' END"
# handing a run back: to the queue, unless it is undoing its steps
_UNCLAIMED_STATUS = "CASE WHEN status = 'COMPENSATING' THEN 'COMPENSATING' ELSE 'ENQUEUED' END"
# anything that should make a waiting run look again (a signal, a decision, a child's end)
_WAKE = (
    "UPDATE runs SET wakeups = wakeups + 1, available_at = CASE WHEN status = 'WAITING' "
    "THEN MIN(available_at, ?) ELSE available_at END WHERE run_id = ?"
)


def _get(conn: Conn, run_id: str) -> RunRecord:
    """The run, locked until the transaction ends where other processes write at once."""
    lock = getattr(conn, "for_update", "")
    row = conn.execute(f"{_RUN_SELECT} WHERE run_id = ?{lock}", (run_id,)).fetchone()
    if row is None:
        raise RunNotFound(run_id)
    return RunRecord(*row)


def _check_fence(conn: Conn, run_id: str, fence: int) -> None:
    lock = getattr(conn, "for_update", "")
    row = conn.execute(
        f"SELECT fence, status FROM runs WHERE run_id = ?{lock}", (run_id,)
    ).fetchone()
    if row is None or row[0] != fence or row[1] not in _ACTIVE:
        raise FenceLost(run_id, fence)


def _lock_key(conn: Conn, key: str) -> None:
    """Serialize transactions about `key` where other processes write at once (PostgreSQL);
    SQLite's writer already runs one transaction at a time."""
    lock = getattr(conn, "lock_key", None)
    if lock is not None:
        lock(key)


def _event_rows(events: Sequence[CloudEvent]) -> list[tuple]:
    """Encode events in the caller's thread, keeping the writer's critical path short."""
    return [
        (
            e.id,
            e.type,
            e.source,
            e.subject,
            e.time,
            e.correlationid,
            e.runid,
            serialization.dumps(e.data) if e.data is not None else None,
        )
        for e in events
    ]


def _insert_events(conn: Conn, rows: Sequence[tuple]) -> None:
    if not rows:
        return
    defer = getattr(conn, "defer", None)
    if defer is not None:  # the writer inserts the group's events in one statement
        defer(_EVENT_INSERT, list(rows))
    else:
        conn.executemany(_EVENT_INSERT, rows)
