"""The PostgreSQL backend: many processes on many machines share one database.

Writes go through the same group-commit writer as SQLite's, on one direct connection per
process; every operation locks the run rows it changes (`FOR UPDATE`) since other processes
write at once. Claims take due runs with `FOR UPDATE SKIP LOCKED`, so workers never wait on
each other. Reads use a small pool. A direct connection LISTENs for new work (a hint: the
dispatcher still polls with jitter), and another holds the leader's advisory lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future
from typing import Any

import psycopg
import psycopg_pool

from baton.core.errors import StoreUnavailable
from baton.core.events import RUN_RECOVERED, run_event
from baton.store.postgres import claims
from baton.store.postgres.dialect import PgConn, PgPolicy, Rows, translate
from baton.store.postgres.schema import prepare
from baton.store.postgres.url import PgUrl, parse
from baton.store.records import RUN_COLUMNS, RunRecord
from baton.store.sql.base import SQLStore
from baton.store.sql.payloads import DEFAULT_THRESHOLD
from baton.store.sql.text import _UNCLAIMED_STATUS, Conn, _event_rows, _insert_events
from baton.store.sql.writer import GroupCommitWriter, WriterPool

DEFAULT_POOL_SIZE = 4
DEFAULT_WRITERS = 2  # connections committing in parallel: one for starts, the rest grouped
DEFAULT_CONNECT_TIMEOUT = 10.0
_GATHER = 0.003  # seconds a wake-up waits for more notifications of the same burst
# a session idle inside a transaction this long belongs to a process that is frozen or cut
# off (Baton's transactions never wait on anything but the server): the server ends it, so
# that its row locks do not hold up the workers that recover its runs
IDLE_IN_TRANSACTION_TIMEOUT = 5.0


class PostgresStore(SQLStore):
    """A Baton store in a PostgreSQL database (or one schema of it, with `?schema=`)."""

    _claim_rows = staticmethod(claims.claim_rows)
    commits_locally = False  # a commit is a round trip: never block an event loop for one

    def __init__(
        self,
        url: str,
        pool_size: int | None = None,
        max_batch: int | None = None,
        payload_threshold: int | None = None,
        connect_timeout: float | None = None,
        writers: int | None = None,
        create: bool = True,
    ) -> None:
        if payload_threshold is not None and (
            not isinstance(payload_threshold, int) or payload_threshold < 0
        ):
            raise ValueError(f"payload_threshold must be an int >= 0, got {payload_threshold!r}")
        try:
            self._url: PgUrl = parse(url)
        except ValueError as exc:
            raise StoreUnavailable(url, str(exc)) from None
        opts = self._url.options
        self.location = self._url.shown
        self.schema = opts.get("schema")
        self.pool_size = _positive("pool_size", pool_size, opts, DEFAULT_POOL_SIZE, self.location)
        self.connect_timeout = float(
            connect_timeout or opts.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT
        )
        self.payload_threshold = _positive(
            "payload_threshold", payload_threshold, opts, DEFAULT_THRESHOLD, self.location, 0
        )
        batch = _positive("max_batch", max_batch, opts, 256, self.location)
        self.writers = _positive("writers", writers, opts, DEFAULT_WRITERS, self.location, 2)
        self.channel = f"baton_{self.schema or 'public'}"
        self._closed = False
        first = self._connect()  # a bad URL or an unreachable server fails here, clearly
        try:
            if self.schema and create:
                first.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            prepare(first, self.location, create)
        except psycopg.Error as exc:
            first.close()
            raise StoreUnavailable(self.location, _reason(exc)) from None
        except BaseException:
            first.close()
            raise
        handed = [first]

        def open_writer() -> PgConn:
            return handed.pop() if handed else self._connect()

        policy = PgPolicy(self.location)
        self._writer = WriterPool(
            [
                GroupCommitWriter(
                    open_writer, max_batch=batch, policy=policy, name=f"baton-pg-writer-{i}"
                )
                for i in range(self.writers)
            ]
        )
        self._pool = psycopg_pool.ConnectionPool(
            self._url.conninfo,
            min_size=1,
            max_size=self.pool_size,
            kwargs=self._connect_kwargs(),
            timeout=self.connect_timeout,
            open=True,
            name="baton-pg-readers",
        )
        self._listeners: list[Callable[[], None]] = []
        self._listen_lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._leader: PgConn | None = None
        self._leader_lock = threading.Lock()

    # -- connections ---------------------------------------------------------------------
    def _connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, round(self.connect_timeout)),
        }
        ms = round(IDLE_IN_TRANSACTION_TIMEOUT * 1000)
        kwargs["options"] = f"-c idle_in_transaction_session_timeout={ms}"
        if self.schema:
            kwargs["options"] += f" -c search_path={self.schema}"
        return kwargs

    def _connect(self) -> PgConn:
        try:
            raw = psycopg.connect(self._url.conninfo, **self._connect_kwargs())
        except psycopg.Error as exc:
            raise StoreUnavailable(self.location, f"{self._url.host}: {_reason(exc)}") from None
        return PgConn(raw, self.channel)

    def _read(self) -> _PooledReader:
        if self._closed:
            raise StoreUnavailable(self.location, "the store is closed")
        return _PooledReader(self)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        self._pool.close()
        with self._leader_lock:
            if self._leader is not None:
                self._leader.close()
                self._leader = None
        if self._listener is not None:
            self._listener.join(timeout=5)

    # -- wake-up hints -------------------------------------------------------------------
    def event_horizon(self) -> int:
        """The next transaction id: every transaction that could hold an event's seq now has
        an id below it."""
        row = self._read().execute("SELECT pg_snapshot_xmax(pg_current_snapshot())").fetchone()
        return int(row[0])

    def event_settled(self, horizon: object) -> bool:
        """Whether every transaction below `horizon` has ended (committed or rolled back)."""
        row = self._read().execute("SELECT pg_snapshot_xmin(pg_current_snapshot())").fetchone()
        return int(row[0]) >= int(horizon)  # type: ignore[call-overload]

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` (in a background thread) when another process makes work ready.
        A hint only: callers still poll. Returns a function that unsubscribes."""
        with self._listen_lock:
            self._listeners.append(callback)
            if self._listener is None:
                self._listener = threading.Thread(
                    target=self._listen, name="baton-pg-listen", daemon=True
                )
                self._listener.start()

        def unsubscribe() -> None:
            with self._listen_lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    def _listen(self) -> None:
        delay = 0.1
        while not self._closed:
            try:
                conn = psycopg.connect(self._url.conninfo, **self._connect_kwargs())
            except psycopg.Error:
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            try:
                conn.execute(f"LISTEN {self.channel}")
                self._notify_all()  # whatever was missed while not listening
                while not self._closed:
                    if not any(True for _ in conn.notifies(timeout=0.5, stop_after=1)):
                        continue
                    # runs come in bursts: gather a burst into one wake-up, so that a worker
                    # claims them in one batch rather than one claim per run
                    time.sleep(_GATHER)
                    for _ in conn.notifies(timeout=0.001):
                        pass
                    self._notify_all()
            except psycopg.Error:
                pass
            finally:
                conn.close()

    def _notify_all(self) -> None:
        with self._listen_lock:
            callbacks = list(self._listeners)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                pass

    # -- claims in doubt ----------------------------------------------------------------
    def release_claims(
        self,
        worker_id: str,
        claimed_at: Sequence[float],
        keep: Collection[str],
        now: float,
        source: str,
    ) -> Future[list[str]]:
        """Hand back the runs that `worker_id` claimed at one of the times `claimed_at` (a
        claim, or a start that claimed its run), but for those in `keep`; return their ids.

        A claim reported failed may have committed all the same (the connection was lost
        during COMMIT): its runs are then RUNNING, owned by a worker that is alive and never
        executes them, and no recovery takes them. A claim sets `updated_at` to its time,
        which tells its runs from any other."""
        times, kept = [float(t) for t in claimed_at], list(keep)

        def op(conn: Conn) -> list[str]:
            rows = conn.execute(
                f"UPDATE runs SET status={_UNCLAIMED_STATUS}, owner=NULL, lease_expires_at=NULL, "
                f"updated_at=? WHERE owner = ? AND status IN ('RUNNING', 'COMPENSATING') "
                f"AND updated_at = ANY(CAST(? AS DOUBLE PRECISION[])) "
                f"AND NOT run_id = ANY(CAST(? AS TEXT[])) RETURNING {', '.join(RUN_COLUMNS)}",
                (now, worker_id, times, kept),
            ).fetchall()
            runs = [RunRecord(*r) for r in rows]
            data = {"reason": "claim in doubt"}
            _insert_events(
                conn, _event_rows([run_event(RUN_RECOVERED, source, r, now, data) for r in runs])
            )
            return [r.run_id for r in runs]

        return self._writer.submit(op)

    # -- leadership ----------------------------------------------------------------------
    def try_lead(self, ttl: float | None = None) -> bool:
        """Hold (or take) the leader's session advisory lock: one process at a time runs the
        schedule and timer sweeps. Every firing stays idempotent; this only saves work.

        With `ttl`, the server ends the leader's session once it has been idle for `ttl`
        seconds, and so frees the lock: a leader that stops calling here (frozen, cut off
        from the server while its connection stays open) must not keep the others from
        leading, since the leader is the one that recovers the runs of dead workers."""
        with self._leader_lock:
            if self._closed:
                return False
            try:
                if self._leader is not None:
                    self._leader.execute("SELECT 1").fetchone()  # still connected, still held
                    return True
                conn = self._connect()
                try:
                    row = conn.execute(
                        "SELECT pg_try_advisory_lock(hashtextextended(?, 0))",
                        (f"baton:leader:{self.channel}",),
                    ).fetchone()
                    held = bool(row and row[0])
                    if held and ttl is not None and conn.raw.info.server_version >= 140000:
                        conn.execute(f"SET idle_session_timeout = {max(1, round(ttl * 1000))}")
                except BaseException:
                    conn.close()
                    raise
                if held:
                    self._leader = conn
                    return True
                conn.close()
                return False
            except (psycopg.Error, StoreUnavailable):
                if self._leader is not None:
                    self._leader.close()
                    self._leader = None
                return False


class _PooledReader:
    """`execute` for reads: a pooled connection per statement, rows fetched at once."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        store = self._store
        try:
            with store._pool.connection() as conn:
                cur = conn.execute(translate(sql), tuple(params))
                rows = cur.fetchall() if cur.description is not None else []
                return Rows(rows, cur.rowcount, cur.description)
        except psycopg_pool.PoolTimeout as exc:
            raise StoreUnavailable(store.location, f"no connection: {exc}") from None
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(store.location, _reason(exc)) from None


def _positive(
    name: str,
    given: int | None,
    opts: dict[str, str],
    default: int,
    location: str,
    minimum: int = 1,
) -> int:
    raw: Any = given if given is not None else opts.get(name, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise StoreUnavailable(location, f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise StoreUnavailable(location, f"{name} must be >= {minimum}, got {value}")
    return value


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
