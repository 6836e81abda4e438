"""Reading and tampering with a test's store past Baton, on either backend.

A test's store is a SQLite file (a Path, or a `sqlite:///` URL) or a PostgreSQL schema (a
`postgresql://...?schema=NAME` URL). SQL is written as for the store itself: SQLite's dialect,
`?` placeholders.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

PG_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(store: str | os.PathLike[str]) -> bool:
    return os.fspath(store).startswith(PG_SCHEMES)


def pg_target(url: str) -> tuple[str, str | None]:
    """(the DSN to connect to, the schema) of a store URL: `schema=` is Baton's, not libpq's."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = dict(query).get("schema")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(("postgresql", parts.netloc, parts.path, rest, "")), schema


def _pg_sql(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class _PgRaw:
    """A psycopg connection (autocommit) that takes `?` placeholders, like sqlite3's."""

    def __init__(self, url: str) -> None:
        import psycopg

        dsn, schema = pg_target(url)
        self.raw = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        if schema:
            self.raw.execute(f'SET search_path TO "{schema}"')

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self.raw.execute(_pg_sql(sql), tuple(params))

    def close(self) -> None:
        self.raw.close()


@contextmanager
def connect(store: str | os.PathLike[str]) -> Iterator[Any]:
    """A connection to the store's database, each statement committed on its own:
    `execute(sql, params)` with `?` placeholders, cursors with `fetchone`/`fetchall`."""
    text = os.fspath(store)
    conn: Any
    if is_postgres(text):
        conn = _PgRaw(text)
    else:
        if text.startswith("sqlite://"):
            text = text.removeprefix("sqlite://").removeprefix("/")
        path = Path(text)
        if not path.exists():  # never let a typo create an empty database
            raise FileNotFoundError(path)
        conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def query(store: str | os.PathLike[str], sql: str, *params: Any) -> list[tuple]:
    """Run one statement against the store's database, committed; its rows (if any)."""
    with connect(store) as conn:
        cur = conn.execute(sql, params)
        return [tuple(row) for row in cur.fetchall()] if cur.description is not None else []


def columns(store: str | os.PathLike[str], table: str) -> list[str]:
    """The names of a table's columns, in order."""
    with connect(store) as conn:
        cur = conn.execute(f"SELECT * FROM {table} WHERE 1 = 0")
        return [d[0] for d in cur.description]


def tables(store: str | os.PathLike[str]) -> set[str]:
    """The tables in the store's database (its schema, on PostgreSQL)."""
    if is_postgres(store):
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = ?"
        return {name for (name,) in query(store, sql, pg_target(os.fspath(store))[1] or "public")}
    return {name for (name,) in query(store, "SELECT name FROM sqlite_master WHERE type='table'")}
