"""Flow control on SQLite: claims under queue limits, queue definitions, and debounced starts.

A claim runs in the writer's `BEGIN IMMEDIATE` transaction, which serializes every process on
the file, so counting what is active and then admitting runs cannot race another claim.

The common case stays one statement: the due runs are taken as they are unless one of them has
a concurrency key or belongs to a queue with a concurrency or rate limit (the `queues` table,
read in the same statement, is tiny). Otherwise the claim counts what holds a slot and the
recent first starts, and admits the due runs one by one in claim order (`Admission`).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from baton.core.errors import FlowControlError
from baton.core.events import RUN_DEBOUNCED, CloudEvent, run_event
from baton.store.flow import DEFAULT_KEY_LIMIT, RATE_HISTORY_MARGIN, Admission, Queue
from baton.store.records import RUN_COLUMNS, RunRecord, run_values
from baton.store.sql.payloads import RUN_PAYLOADS, run_record, spill, spill_values
from baton.store.sql.text import (
    _CLAIMED_STATUS,
    _READY,
    _RUN_INSERT,
    _RUN_SELECT,
    Conn,
    _event_rows,
    _insert_events,
)

_RETURNING = f"RETURNING {', '.join(RUN_COLUMNS)}"
_CLAIM_SET = (
    f"SET status={_CLAIMED_STATUS}, owner=?, fence=fence+1, attempt=attempt+1, "
    f"lease_expires_at=?, updated_at=?, started_at=COALESCE(started_at, ?)"
)
_ORDER = "ORDER BY priority DESC, available_at, run_id"
_LIMITED_QUEUES = "SELECT name FROM queues WHERE concurrency IS NOT NULL OR rate_limit IS NOT NULL"
# a run holds a slot while it executes or compensates; an unowned one is only waiting for a claim
_HOLDING = "status IN ('RUNNING', 'COMPENSATING') AND owner IS NOT NULL"
# due runs whose concurrency key still has room, by the counts before this claim
_KEY_ROOM = (
    "(runs.concurrency_key IS NULL OR (SELECT COUNT(*) FROM runs AS held "
    "WHERE held.concurrency_key = runs.concurrency_key "
    "AND held.status IN ('RUNNING', 'COMPENSATING') AND held.owner IS NOT NULL) "
    "< COALESCE(runs.key_limit, (SELECT key_concurrency FROM queues WHERE name = runs.queue), ?))"
)
_QUEUE_COLUMNS = "name, concurrency, key_concurrency, rate_limit, rate_period"
# SQLite's planner would read claimable runs through `runs_status` (every waiting run, then a
# sort); the partial index of claimable runs holds only those, ordered by available_at
_READY_RUNS = "runs INDEXED BY runs_ready"


def claim_rows(
    conn: Conn,
    worker_id: str,
    where: str,
    params: tuple,
    limit: int,
    now: float,
    lease: float,
) -> tuple[list[tuple], float | None]:
    """Claim up to `limit` due runs within their limits: (rows in RUN_COLUMNS order, the time
    a rate window frees for runs it held back, or None)."""
    claim = (worker_id, now + lease, now, now)
    # the fast path: one statement, which claims nothing unless every one of the first due
    # runs is free of limits (`held` marks a batch with a limited or keyed run)
    rows = conn.execute(
        f"UPDATE runs {_CLAIM_SET} WHERE run_id IN (SELECT run_id FROM (SELECT run_id, "
        f"MAX(concurrency_key IS NOT NULL OR queue IN ({_LIMITED_QUEUES})) OVER () AS held "
        f"FROM (SELECT run_id, queue, concurrency_key FROM {_READY_RUNS} "
        f"WHERE {_READY} AND available_at <= ? {where} {_ORDER} LIMIT ?)) WHERE NOT held) "
        f"{_RETURNING}",
        (*claim, now, *params, limit),
    ).fetchall()
    if rows:
        return rows, None
    return _claim_admitted(conn, claim, where, params, limit, now, _READY_RUNS)


def _claim_admitted(
    conn: Conn,
    claim: tuple,
    where: str,
    params: tuple,
    limit: int,
    now: float,
    ready_runs: str = "runs",
) -> tuple[list[tuple], float | None]:
    """Admit due runs one by one within their limits. `ready_runs` names the runs table as
    the backend best reads the claimable ones (SQLite: through the ready-runs index)."""
    due = f"{_READY} AND available_at <= ? {where}"
    if (
        conn.execute(f"SELECT 1 FROM {ready_runs} WHERE {due} LIMIT 1", (now, *params)).fetchone()
        is None
    ):
        return [], None
    stored = map(_stored_queue, conn.execute(f"SELECT {_QUEUE_COLUMNS} FROM queues"))
    limits = {q.name: q for q in stored if q is not None}
    bounded = [name for name, q in limits.items() if q.concurrency is not None]
    active: dict[str, int] = {}
    if bounded:
        active = dict(
            conn.execute(
                f"SELECT queue, COUNT(*) FROM runs WHERE {_HOLDING} "
                f"AND queue IN ({_marks(bounded)}) GROUP BY queue",
                bounded,
            ).fetchall()
        )
    active_keys = dict(
        conn.execute(
            f"SELECT concurrency_key, COUNT(*) FROM runs WHERE concurrency_key IS NOT NULL "
            f"AND {_HOLDING} GROUP BY concurrency_key"
        ).fetchall()
    )
    starts: dict[str, int] = {}
    for name, q in limits.items():
        if q.rate_limit is not None:
            conn.execute(
                "DELETE FROM queue_starts WHERE queue = ? AND at <= ?",
                (name, now - q.rate_period - RATE_HISTORY_MARGIN),
            )
            starts[name] = _window_count(conn, q, now)
    admission = Admission(limits, active, active_keys, starts)

    # leave out, in SQL, what cannot be admitted whatever this claim does
    skip = _KEY_ROOM
    skip_params: list[Any] = [DEFAULT_KEY_LIMIT]
    full = admission.full_queues()
    if full:
        skip += f" AND queue NOT IN ({_marks(full)})"
        skip_params += full
    exhausted = admission.rate_exhausted()
    if exhausted:
        skip += f" AND NOT (attempt = 0 AND queue IN ({_marks(exhausted)}))"
        skip_params += exhausted
    admitted: list[str] = []
    first_starts: list[tuple[str, float]] = []
    cursor = conn.execute(
        f"SELECT run_id, queue, concurrency_key, key_limit, attempt FROM {ready_runs} "
        f"WHERE {due} AND {skip} {_ORDER}",
        (now, *params, *skip_params),
    )
    # runs refused here are only those this claim filled up; the next claim skips them in SQL
    budget = limit * 8 + 256
    try:
        for run_id, queue, key, key_limit, attempt in cursor:
            budget -= 1
            if admission.admit(queue, key, key_limit, attempt == 0):
                admitted.append(run_id)
                q = limits.get(queue)
                if attempt == 0 and q is not None and q.rate_limit is not None:
                    first_starts.append((queue, now))
                if len(admitted) >= limit:
                    break
            if budget <= 0:
                break
    finally:
        cursor.close()
    rows: list[tuple] = []
    if admitted:
        rows = conn.execute(
            f"UPDATE runs {_CLAIM_SET} WHERE run_id IN ({_marks(admitted)}) AND {_READY} "
            f"{_RETURNING}",
            (*claim, *admitted),
        ).fetchall()
        if first_starts:
            conn.executemany("INSERT INTO queue_starts (queue, at) VALUES (?, ?)", first_starts)
    held = [limits[name] for name in sorted(set(exhausted) | admission.rate_blocked)]
    frees = [t for t in (_window_frees_at(conn, q, now) for q in held) if t is not None]
    return rows, min(frees, default=None)


def _window_count(conn: Conn, q: Queue, now: float) -> int:
    # starts stamped after `now` count too: another process's clock read may be a little later
    return conn.execute(
        "SELECT COUNT(*) FROM queue_starts WHERE queue = ? AND at > ?",
        (q.name, now - q.rate_period),
    ).fetchone()[0]


def _window_frees_at(conn: Conn, q: Queue, now: float) -> float | None:
    """When `q`'s window next has room: its oldest start that must leave it, plus the period."""
    assert q.rate_limit is not None
    excess = _window_count(conn, q, now) - q.rate_limit
    if excess < 0:
        return None
    row = conn.execute(
        "SELECT at FROM queue_starts WHERE queue = ? AND at > ? ORDER BY at LIMIT 1 OFFSET ?",
        (q.name, now - q.rate_period, excess),
    ).fetchone()
    return None if row is None else row[0] + q.rate_period


def _stored_queue(row: Sequence[Any]) -> Queue | None:
    # a row edited by hand into nonsense must not stop every claim: it limits nothing
    try:
        return Queue(*row)
    except FlowControlError:
        return None


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


class FlowOps:
    """Store calls for queue limits and debounced starts (mixed into SQLiteStore)."""

    _writer: Any
    _read: Any
    payload_threshold: int

    def define_queue(self, queue: Queue, now: float) -> Future[Queue]:
        """Create or replace `queue`'s limits; every process's next claim obeys them."""

        def op(conn: Conn) -> Queue:
            conn.execute(
                f"INSERT INTO queues ({_QUEUE_COLUMNS}, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency, "
                "key_concurrency = excluded.key_concurrency, rate_limit = excluded.rate_limit, "
                "rate_period = excluded.rate_period, updated_at = excluded.updated_at",
                (
                    queue.name,
                    queue.concurrency,
                    queue.key_concurrency,
                    queue.rate_limit,
                    queue.rate_period,
                    now,
                ),
            )
            if queue.rate_limit is None:
                conn.execute("DELETE FROM queue_starts WHERE queue = ?", (queue.name,))
            return queue

        return self._writer.submit(op)

    def get_queue(self, name: str) -> Queue | None:
        row = (
            self._read()
            .execute(f"SELECT {_QUEUE_COLUMNS} FROM queues WHERE name = ?", (name,))
            .fetchone()
        )
        return Queue(*row) if row else None

    def list_queues(self) -> list[Queue]:
        rows = self._read().execute(f"SELECT {_QUEUE_COLUMNS} FROM queues ORDER BY name")
        return [Queue(*row) for row in rows.fetchall()]

    def debounce_run(
        self, run: RunRecord, events: Sequence[CloudEvent], source: str
    ) -> Future[tuple[RunRecord, bool]]:
        """Insert `run` (its `debounce_key` set, `available_at` in the future), unless an
        ENQUEUED, never-started run of the same workflow and version has that key: that run
        then takes `run`'s input, `available_at` and deadline, and comes back (created=False).
        An existing run with the same idempotency key wins over both."""
        values = run_values(run)
        rows = _event_rows(events)
        threshold = self.payload_threshold
        now = run.created_at

        def op(conn: Conn) -> tuple[RunRecord, bool]:
            if run.idempotency_key is not None:
                row = conn.execute(
                    f"{_RUN_SELECT} WHERE idempotency_key = ?", (run.idempotency_key,)
                ).fetchone()
                if row is not None:
                    return run_record(conn, row), False
            row = conn.execute(
                f"UPDATE runs SET input = ?, available_at = ?, deadline_at = ?, updated_at = ? "
                f"WHERE run_id = (SELECT run_id FROM runs WHERE debounce_key = ? "
                f"AND status = 'ENQUEUED' AND workflow = ? AND version = ? AND attempt = 0 "
                f"AND owner IS NULL ORDER BY created_at, run_id LIMIT 1) {_RETURNING}",
                (
                    spill(conn, run.input, now, threshold),
                    run.available_at,
                    run.deadline_at,
                    now,
                    run.debounce_key,
                    run.workflow,
                    run.version,
                ),
            ).fetchone()
            if row is not None:
                kept = run_record(conn, row)
                data = {"debounce_key": run.debounce_key, "available_at": run.available_at}
                _insert_events(
                    conn, _event_rows([run_event(RUN_DEBOUNCED, source, kept, now, data)])
                )
                return kept, False
            conn.execute(_RUN_INSERT, spill_values(conn, values, RUN_PAYLOADS, now, threshold))
            _insert_events(conn, rows)
            return run, True

        return self._writer.submit(op)
