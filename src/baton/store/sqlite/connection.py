"""Opening SQLite files the way Baton needs them, and checking what they hold."""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from baton.core.errors import NotABatonStore, SchemaVersionError, StoreUnavailable
from baton.store.sqlite.migrations import MIGRATIONS, SCHEMA_VERSION

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")


# INSERT … VALUES (?, …) [ON CONFLICT …]: rows can go in one statement
_VALUES = re.compile(r"^INSERT INTO \w+ \([^)]*\) VALUES (\((?:\?, )*\?\))")
_MAX_ROWS = 256


class WriterConnection(sqlite3.Connection):
    """The writer's connection: rows deferred with `defer` are inserted once per group."""

    deferred: dict[str, list[tuple]]

    def defer(self, sql: str, rows: list[tuple]) -> None:
        self.deferred.setdefault(sql, []).extend(rows)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> Any:  # type: ignore[override]
        """Many rows of an `INSERT … VALUES` in a few multi-row statements (chunks of a power
        of two rows, so that few statement texts are prepared): each statement is one
        release of the GIL, where a row per statement would be one each."""
        values = _VALUES.match(sql)
        if values is None or len(rows) < 2:
            return super().executemany(sql, rows)
        done, at, count = 0, 0, len(rows)
        while at < count:
            size = min(1 << ((count - at).bit_length() - 1), _MAX_ROWS)
            chunk = rows[at : at + size]
            text = _multi_row(sql, values.start(1), values.end(1), size)
            done += self.execute(text, [v for row in chunk for v in row]).rowcount
            at += size
        return _Inserted(done)


class _Inserted:
    """What `executemany` answers for rows it inserted in several statements."""

    def __init__(self, rowcount: int) -> None:
        self.rowcount = rowcount


@functools.lru_cache(maxsize=256)
def _multi_row(sql: str, start: int, end: int, count: int) -> str:
    return sql[:start] + ", ".join([sql[start:end]] * count) + sql[end:]


def connect(
    path: Path, synchronous: str, busy_timeout_ms: int, readonly: bool
) -> sqlite3.Connection:
    location = str(path)
    factory = sqlite3.Connection if readonly else WriterConnection
    try:
        conn = sqlite3.connect(
            location, isolation_level=None, check_same_thread=False, factory=factory
        )
    except sqlite3.Error as exc:
        raise StoreUnavailable(location, str(exc)) from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = OFF")
        if readonly:
            conn.execute("PRAGMA query_only = ON")
    except sqlite3.OperationalError as exc:
        conn.close()
        raise StoreUnavailable(location, str(exc)) from None
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise NotABatonStore(location, str(exc)) from None
    return conn


def prepare(conn: sqlite3.Connection, location: str) -> None:
    """Check the file is a Baton store (or empty), switch to WAL and migrate it."""
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.OperationalError as exc:
        raise StoreUnavailable(location, str(exc)) from None
    except sqlite3.DatabaseError as exc:
        raise NotABatonStore(location, str(exc)) from None
    if tables and "baton_meta" not in tables:
        shown = ", ".join(sorted(tables)[:5])
        raise NotABatonStore(location, f"it holds other tables ({shown}) and no baton_meta")
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    except sqlite3.OperationalError as exc:
        raise StoreUnavailable(location, str(exc)) from None
    if str(mode).lower() != "wal":
        raise StoreUnavailable(location, f"cannot switch to WAL journal mode (got {mode})")
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS baton_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        row = conn.execute("SELECT value FROM baton_meta WHERE key='schema_version'").fetchone()
        found = int(row[0]) if row else 0
        if found > SCHEMA_VERSION:
            raise SchemaVersionError(location, found, SCHEMA_VERSION)
        for number in range(found + 1, SCHEMA_VERSION + 1):
            for statement in _statements(MIGRATIONS[number - 1]):
                conn.execute(statement)
        conn.execute(
            "INSERT INTO baton_meta (key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
