"""The SQLite backend: one file, WAL, one group-commit writer, a reader per thread."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from baton.core.errors import StoreUnavailable
from baton.store.sql.base import SQLStore
from baton.store.sql.payloads import DEFAULT_THRESHOLD
from baton.store.sql.writer import GroupCommitWriter
from baton.store.sqlite.connection import SYNCHRONOUS_MODES, connect, prepare


class SQLiteStore(SQLStore):
    """A Baton store in one SQLite file (created, with its directory, when missing)."""

    # the partial index of claimable runs; the planner would otherwise pick `runs_status`
    _READY_RUNS = "runs INDEXED BY runs_ready"

    def __init__(
        self,
        path: Path | str,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 30_000,
        max_batch: int = 512,
        payload_threshold: int = DEFAULT_THRESHOLD,
    ) -> None:
        path = Path(path)
        if not isinstance(payload_threshold, int) or payload_threshold < 0:
            raise ValueError(f"payload_threshold must be an int >= 0, got {payload_threshold!r}")
        # serialized values longer than this (in characters) are stored once in `payloads`
        self.payload_threshold = payload_threshold
        self.path = path
        self.location = f"sqlite:///{path}"
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, got {synchronous!r}")
        if path.is_dir():
            raise StoreUnavailable(str(path), "it is a directory")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(str(path), exc.strerror or str(exc)) from None
        self._connect_args = (path, synchronous, busy_timeout_ms)

        def open_writer() -> sqlite3.Connection:
            conn = connect(path, synchronous, busy_timeout_ms, readonly=False)
            try:
                prepare(conn, str(path))
            except BaseException:
                conn.close()
                raise
            return conn

        self._writer = GroupCommitWriter(open_writer, max_batch=max_batch)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def _read(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            path, synchronous, busy = self._connect_args
            conn = connect(path, synchronous, busy, readonly=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def close(self) -> None:
        self._writer.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
