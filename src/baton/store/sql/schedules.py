"""Schedules on SQLite: declarations, pause and resume, and firing due slots.

A firing inserts the slot's run (its idempotency key names the schedule and the slot) and moves
`next_fire_at` in the same transaction, so processes racing for one slot start one run. The
slot maths lives in the engine: it hands a `plan` that is called here, inside the transaction,
with the row as it is now and the schedule's unfinished runs; a plan made from a row that has
changed since returns None and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from baton.core.errors import ScheduleNotFound
from baton.core.events import CloudEvent
from baton.store.records import (
    SCHEDULE_COLUMNS,
    SCHEDULE_SPEC,
    TERMINAL,
    RunRecord,
    ScheduleFiring,
    ScheduleRecord,
    run_values,
)
from baton.store.sql.payloads import RUN_PAYLOADS, run_record, spill_values
from baton.store.sql.text import (
    _RUN_INSERT,
    _RUN_SELECT,
    Conn,
    _event_rows,
    _insert_events,
    _lock_key,
)

_SELECT = f"SELECT {', '.join(SCHEDULE_COLUMNS)} FROM schedules"
_INSERT = (
    f"INSERT INTO schedules ({', '.join(SCHEDULE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in SCHEDULE_COLUMNS)})"
)
_TIMING = ("kind", "spec", "timezone")
# a schedule's runs that have not ended, and those of them not started yet
_UNFINISHED = (
    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'ENQUEUED' AND started_at IS NULL "
    "THEN 1 ELSE 0 END), 0) FROM runs "
    f"WHERE schedule = ? AND status NOT IN ({', '.join(repr(str(s)) for s in TERMINAL)})"
)

Plan = Callable[[ScheduleRecord, int, int], ScheduleFiring | None]


class ScheduleOps:
    """Store calls for schedules (mixed into SQLiteStore)."""

    _writer: Any
    _read: Any
    payload_threshold: int

    # -- declarations ----------------------------------------------------------------------
    def save_schedule(self, schedule: ScheduleRecord) -> Future[tuple[ScheduleRecord, str]]:
        """Insert or update a declared schedule; returns the stored row and "created",
        "updated" or "unchanged". An update keeps `paused`, and keeps `next_fire_at` unless
        the timing (kind, spec, time zone) changed."""
        values = tuple(_db_value(getattr(schedule, c)) for c in SCHEDULE_COLUMNS)

        def op(conn: Conn) -> tuple[ScheduleRecord, str]:
            _lock_key(conn, f"baton:schedule:{schedule.name}")
            old = _get(conn, schedule.name)
            if old is None:
                conn.execute(_INSERT, values)
                return schedule, "created"
            if all(getattr(old, c) == getattr(schedule, c) for c in SCHEDULE_SPEC):
                return old, "unchanged"
            columns = list(SCHEDULE_SPEC)
            if any(getattr(old, c) != getattr(schedule, c) for c in _TIMING):
                columns.append("next_fire_at")
            assignments = ", ".join(f"{c} = ?" for c in columns)
            conn.execute(
                f"UPDATE schedules SET {assignments}, updated_at = ? WHERE name = ?",
                (*(getattr(schedule, c) for c in columns), schedule.updated_at, schedule.name),
            )
            return _must_get(conn, schedule.name), "updated"

        return self._writer.submit(op)

    def get_schedule(self, name: str) -> ScheduleRecord | None:
        return _get(self._read(), name)

    def list_schedules(self) -> list[ScheduleRecord]:
        rows = self._read().execute(f"{_SELECT} ORDER BY name").fetchall()
        return [ScheduleRecord.from_row(r) for r in rows]

    # -- pause and resume --------------------------------------------------------------------
    def pause_schedule(
        self, name: str, now: float, events: Sequence[CloudEvent]
    ) -> Future[ScheduleRecord]:
        """Stop firing `name` (its events are written only if it was running)."""
        rows = _event_rows(events)

        def op(conn: Conn) -> ScheduleRecord:
            _lock_key(conn, f"baton:schedule:{name}")
            _must_get(conn, name)
            cur = conn.execute(
                "UPDATE schedules SET paused = 1, updated_at = ? WHERE name = ? AND paused = 0",
                (now, name),
            )
            if cur.rowcount:
                _insert_events(conn, rows)
            return _must_get(conn, name)

        return self._writer.submit(op)

    def resume_schedule(
        self,
        name: str,
        now: float,
        next_fire_at: Callable[[ScheduleRecord], float | None],
        events: Sequence[CloudEvent],
    ) -> Future[ScheduleRecord]:
        """Fire `name` again from `next_fire_at(row)` on; the slots passed while it was
        paused are not fired. A schedule that is not paused is left as it is."""
        rows = _event_rows(events)

        def op(conn: Conn) -> ScheduleRecord:
            _lock_key(conn, f"baton:schedule:{name}")
            schedule = _must_get(conn, name)
            if not schedule.paused:
                return schedule
            conn.execute(
                "UPDATE schedules SET paused = 0, next_fire_at = ?, updated_at = ? WHERE name = ?",
                (next_fire_at(schedule), now, name),
            )
            _insert_events(conn, rows)
            return _must_get(conn, name)

        return self._writer.submit(op)

    # -- firing ------------------------------------------------------------------------------
    def next_schedule_fire(self) -> float | None:
        """The earliest `next_fire_at` of the schedules that are not paused, or None."""
        row = (
            self._read()
            .execute("SELECT MIN(next_fire_at) FROM schedules WHERE paused = 0")
            .fetchone()
        )
        return row[0] if row else None

    def due_schedules(self, now: float) -> list[ScheduleRecord]:
        rows = (
            self._read()
            .execute(
                f"{_SELECT} WHERE paused = 0 AND next_fire_at <= ? ORDER BY next_fire_at, name",
                (now,),
            )
            .fetchall()
        )
        return [ScheduleRecord.from_row(r) for r in rows]

    def fire_schedule(self, name: str, now: float, plan: Plan) -> Future[list[RunRecord]]:
        """If `name` is due at `now`, call `plan(row, unfinished, not_started)` and write what
        it returns: its runs (each at most once, by idempotency key), its events and the new
        `next_fire_at`, in one transaction. Returns the runs created."""
        threshold = self.payload_threshold

        def op(conn: Conn) -> list[RunRecord]:
            _lock_key(conn, f"baton:schedule:{name}")  # two processes firing: one at a time
            schedule = _get(conn, name)
            if schedule is None or schedule.paused:
                return []
            if schedule.next_fire_at is None or schedule.next_fire_at > now:
                return []  # another process fired it first
            unfinished, waiting = conn.execute(_UNFINISHED, (name,)).fetchone()
            firing = plan(schedule, unfinished, waiting)
            if firing is None:
                return []
            created = _insert_runs(conn, firing.runs, threshold)
            _insert_events(conn, _event_rows(firing.events))
            conn.execute(
                "UPDATE schedules SET next_fire_at = ?, "
                "last_fire_at = COALESCE(?, last_fire_at), updated_at = ? WHERE name = ?",
                (firing.next_fire_at, firing.last_fire_at, now, name),
            )
            return [run for run, new in created if new]

        return self._writer.submit(op)

    def create_schedule_runs(
        self, runs: Sequence[tuple[RunRecord, list[CloudEvent]]]
    ) -> Future[list[tuple[RunRecord, bool]]]:
        """Insert runs of a schedule in one transaction (a backfill); a run whose idempotency
        key exists already is returned as stored, with created=False."""
        threshold = self.payload_threshold
        pairs = list(runs)
        return self._writer.submit(lambda conn: _insert_runs(conn, pairs, threshold))


def _insert_runs(
    conn: Conn,
    runs: Sequence[tuple[RunRecord, list[CloudEvent]]],
    threshold: int,
) -> list[tuple[RunRecord, bool]]:
    out = []
    for run, events in runs:
        values = run_values(run)
        stored = spill_values(conn, values, RUN_PAYLOADS, run.created_at, threshold)
        if conn.execute(_RUN_INSERT, stored).rowcount == 1:
            _insert_events(conn, _event_rows(events))
            out.append((run, True))
            continue
        row = conn.execute(
            f"{_RUN_SELECT} WHERE idempotency_key = ?", (run.idempotency_key,)
        ).fetchone()
        out.append((run_record(conn, row), False))
    return out


def _db_value(value: object) -> object:
    return int(value) if isinstance(value, bool) else value  # flags are integers in both


def _get(conn: Conn, name: str) -> ScheduleRecord | None:
    row = conn.execute(f"{_SELECT} WHERE name = ?", (name,)).fetchone()
    return ScheduleRecord.from_row(row) if row else None


def _must_get(conn: Conn, name: str) -> ScheduleRecord:
    schedule = _get(conn, name)
    if schedule is None:
        raise ScheduleNotFound(name)
    return schedule
