"""Running the shared SQL on PostgreSQL: placeholders, the few spellings that differ, errors.

The store's SQL is written once with `?` placeholders in the dialect SQLite and PostgreSQL
share. `translate` turns it into psycopg's `%s` form (cached per statement text); `PgConn`
gives operations the small part of `sqlite3.Connection` they use.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from baton.core.errors import StoreDisconnected, StoreError, StoreUnavailable
from baton.store.sql.writer import WriterPolicy

# statements whose SQLite spelling PostgreSQL does not take, spelled for PostgreSQL
_SPELLINGS = (
    ("BEGIN IMMEDIATE", "BEGIN"),
    ("MIN(available_at, ?)", "LEAST(available_at, ?)"),
    # the fenced checkpoint: the run row stays as read until the commit
    ("'COMPENSATING')) ON CONFLICT", "'COMPENSATING') FOR SHARE) ON CONFLICT"),
)
# INSERT ... SELECT ?, ?: PostgreSQL reads an untyped parameter in a select list as text
_INSERT_SELECT = re.compile(r"^INSERT INTO (\w+) \(([^)]*)\) SELECT ((?:\?, )*\?) WHERE")


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    for sqlite_text, pg_text in _SPELLINGS:
        sql = sql.replace(sqlite_text, pg_text)
    match = _INSERT_SELECT.match(sql)
    if match:
        table, columns = match.group(1), [c.strip() for c in match.group(2).split(",")]
        typed = ", ".join(f"CAST(? AS {_column_type(table, c)})" for c in columns)
        sql = sql[: match.start(3)] + typed + sql[match.end(3) :]
    return sql.replace("%", "%%").replace("?", "%s")


def _column_type(table: str, column: str) -> str:
    from baton.store.postgres.schema import column_types

    return column_types()[table][column]


# statements after which a run may be ready for any worker: a new run, a wake-up, a hand-back
_READYING = (
    "INSERT INTO runs",
    "wakeups = wakeups + 1",
    "ELSE 'ENQUEUED' END",
    "status='ENQUEUED'",
)


@functools.lru_cache(maxsize=4096)
def _readies(sql: str) -> bool:
    return any(text in sql for text in _READYING)


_VALUES = re.compile(r"^INSERT INTO \w+ \([^)]*\) VALUES (\((?:\?, )*\?\))$")
_MAX_PARAMS = 30_000  # PostgreSQL takes at most 65,535 parameters in one statement


@functools.lru_cache(maxsize=256)
def _multi_row(sql: str, at: int, count: int) -> str:
    """`INSERT … VALUES (?, ?)` for `count` rows, in psycopg's spelling."""
    return translate(sql[:at] + ", ".join([sql[at:]] * count))


class Rows:
    """A read's result, fetched at once (the connection goes back to the pool)."""

    def __init__(self, rows: list[tuple], rowcount: int, description: Any = None) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount
        self.description = description

    def fetchone(self) -> tuple | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[tuple]:
        rows, self._next = self._rows[self._next :], len(self._rows)
        return rows

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.fetchall())


class PgConn:
    """A psycopg connection (autocommit: the writer says BEGIN and COMMIT) for operations."""

    # appended to the reads of a run row that an operation goes on to change: on PostgreSQL
    # other processes write at the same time, and the row lock orders them
    for_update = " FOR UPDATE"

    def __init__(self, raw: psycopg.Connection, channel: str | None = None) -> None:
        self.raw = raw
        self.channel = channel
        self.deferred: dict[str, list[tuple]] = {}
        self._readied = False

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        if self.channel is not None:
            if sql == "COMMIT" and self._readied:  # delivered with the commit, or not at all
                self.raw.execute(f"NOTIFY {self.channel}")
            if sql in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"):
                self._readied = False
            elif _readies(sql):
                self._readied = True
        return self.raw.execute(translate(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> psycopg.Cursor:
        cur = self.raw.cursor()
        values = _VALUES.search(sql)
        if values is None or not rows:
            cur.executemany(translate(sql), rows)
            return cur
        # INSERT … VALUES (…): one statement with many rows, one round trip
        width = len(rows[0])
        per = max(1, _MAX_PARAMS // width)
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            cur.execute(_multi_row(sql, values.start(1), len(chunk)), [v for r in chunk for v in r])
        return cur

    def defer(self, sql: str, rows: list[tuple]) -> None:
        self.deferred.setdefault(sql, []).extend(rows)

    def lock_key(self, key: str) -> None:
        """Hold a lock on `key` until the transaction ends (debounce keys, queue budgets)."""
        self.raw.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))

    def after_import(self) -> None:
        """Rows were copied in with their own `seq`: move the identity sequences past them."""
        from baton.store.postgres.schema import IDENTITY_TABLES

        for table in IDENTITY_TABLES:
            self.raw.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'seq'), "
                f"COALESCE((SELECT MAX(seq) FROM {table}), 0) + 1, false)"
            )

    def close(self) -> None:
        self.raw.close()


class PgPolicy(WriterPolicy):
    begin = "BEGIN"
    local = False

    def __init__(self, location: str) -> None:
        self.location = location

    def dooms_group(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.OperationalError | pg_errors.InFailedSqlTransaction)

    def retry_delay(self, exc: BaseException, attempt: int) -> float | None:
        if isinstance(exc, pg_errors.SerializationFailure | pg_errors.DeadlockDetected):
            return min(0.002 * 2**attempt, 0.1) if attempt < 30 else None
        lost = isinstance(exc, psycopg.OperationalError | StoreUnavailable)
        if lost and attempt < 8:
            return min(0.05 * 2**attempt, 2.0)  # a lost connection: opened again, then retried
        return None

    def broken(self, conn: Any, exc: BaseException) -> bool:
        raw = getattr(conn, "raw", None)
        return raw is None or raw.closed or bool(getattr(raw, "broken", False))

    def unavailable(self, exc: BaseException) -> StoreError:
        if isinstance(exc, StoreUnavailable):  # could not even connect
            return exc
        if isinstance(exc, pg_errors.TransactionRollback):  # conflicts outlasted the retries
            return StoreError(f"commit failed on {self.location}: {_reason(exc)}")
        return StoreDisconnected(self.location, _reason(exc))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
