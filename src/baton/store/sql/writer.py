"""One writer per store: one write connection, committed in groups.

Callers submit an operation (a function of the connection) and get a Future. A committer
takes every operation waiting (up to `max_batch`), runs them under one `BEGIN IMMEDIATE`,
commits once, and only then resolves the futures. Operations are pure functions of the
connection, so when one raises, the group is rolled back and run again with a savepoint
around each operation: the failing one alone is undone, the rest commits. Rows an operation
defers (`conn.defer`, used for event rows) are inserted together just before the commit
(`executemany`, which both backends turn into a few multi-row statements), which keeps the
writer's statements, and so its hand-offs of the GIL, few.

Who commits: a caller that blocks on its future while no commit is under way commits the
waiting group itself (`lead`), so a lone caller pays no thread hand-off. An event loop
registered with `commit_on` commits its tasks' writes itself, once per turn. The writer
thread commits the rest: what was submitted during a commit (its committer wakes the
thread), and what other event loops submit (they await and never block; such submissions
wake it). Other submissions do not wake it. So that a write nobody waits for cannot sit
forever, the thread also commits whatever has waited `SAFETY_INTERVAL`. One lock keeps a
single committer at a time.

Where a commit is a local fsync (SQLite; not over a network, where the next commit may hang
for as long as a dead connection takes to be noticed): when a caller that committed its
group finds more writes waiting, so that a commit follows at once, it returns with its own
write resolved and leaves the others' futures to that commit, which resolves them just
before it syncs: their threads run while the disk works instead of competing for the GIL
with the statements of the commit (each statement lets go of the GIL, and a thread running
Python keeps it until it blocks). Other futures are resolved after the commit, outside the
lock. Callbacks on these futures must not block. For the same reason a caller can hand
over other wake-ups (`at_next_sync`: a new run's hand-off to its worker) to be made at the
next commit's sync. Of the callers woken there, the committer wakes one that blocks on its
write, and leaves it the others and the handed-over wake-ups: each wake-up is a system call
on the commit's path, and the woken thread makes them as the disk syncs.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import FINISHED, RUNNING
from typing import Any, TypeVar

from baton.core.errors import StoreError
from baton.store.sql.write_future import WriteFuture

T = TypeVar("T")
log = logging.getLogger("baton.store")
Op = Callable[[Any], Any]

_STOP = object()
_WAKE = object()  # wakes the writer thread without a write
SAFETY_INTERVAL = 0.1  # seconds a write waits, at most, for a caller to commit it


class WriterPolicy:
    """What a backend's errors mean to the writer. This one is SQLite's."""

    begin = "BEGIN IMMEDIATE"
    # a commit is a local fsync: it cannot hang on a network, so wake-ups may wait for the
    # next one (see the module's docstring); over a network they are made at once
    local = True

    def dooms_group(self, exc: BaseException) -> bool:
        """Raised by one operation, does `exc` fail (or retry) the whole group?"""
        if not isinstance(exc, sqlite3.OperationalError):
            return False
        text = str(exc)
        return any(word in text for word in ("locked", "busy", "I/O", "disk", "readonly"))

    def retry_delay(self, exc: BaseException, attempt: int) -> float | None:
        """The group failed with `exc`: wait this long and run it again, or None to fail it."""
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return min(0.001 * 2**attempt, 0.05) if attempt < 50 else None
        return None

    def broken(self, conn: Any, exc: BaseException) -> bool:
        """Is the connection unusable after `exc` (then it is opened again)?"""
        return False

    def unavailable(self, exc: BaseException) -> StoreError:
        return StoreError(f"commit failed: {exc}")


class _Pending(WriteFuture):
    """A write's future: waiting on it commits the waiting group here if the writer is idle."""

    def __init__(self, writer: GroupCommitWriter) -> None:
        super().__init__()
        self._writer = writer
        # a thread blocks on it until it is done: its resolver may leave that thread the
        # others of its group to wake (`_wake`); both under the future's lock
        self._blocked = False
        self._relay: list[tuple[list[tuple[Future, bool, Any]], list[Callable[[], Any]]]] = []

    def result(self, timeout: float | None = None) -> Any:
        if self._state != FINISHED:
            self._writer.lead(self)
            if self._state != FINISHED and timeout is None:
                self._blocked = True
                try:
                    self._wait(None)
                finally:  # also when interrupted: what was left to it is passed on
                    with self._lock:
                        self._blocked = False
                        relay, self._relay = self._relay, []
                    for later, calls in relay:
                        _wake(later, calls)
        return super().result(timeout)

    def take_relay(self, later: list[tuple[Future, bool, Any]], calls: list[Any]) -> bool:
        """Leave `later` and `calls` to the thread blocked on this future, if one is."""
        with self._lock:
            if not self._blocked or self._state != RUNNING:
                return False
            self._relay.append((later, calls))
            return True


class GroupCommitWriter:
    def __init__(
        self,
        connect: Callable[[], Any],
        max_batch: int = 512,
        policy: WriterPolicy | None = None,
        name: str = "baton-sqlite-writer",
    ) -> None:
        self._policy = policy or WriterPolicy()
        self._connect = connect
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()  # wakes the thread
        self._waiting: collections.deque[Any] = collections.deque()  # its caller commits it
        self._max_batch = max_batch
        self._closed = False
        # outcomes of a committed group, left by its committer for the next commit to resolve
        self._later: list[tuple[Future, bool, Any]] = []
        self._at_sync: list[Callable[[], Any]] = []  # see at_next_sync
        self._commit_lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        # see commit_on; weak, as a caller's own loop goes with its thread
        self._committing_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._lead_due: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, args=(connect,), name=name, daemon=True)
        self._thread.start()
        self._ready.result()  # surface open errors in the caller

    def submit(self, op: Callable[[Any], T]) -> Future[T]:
        fut: Future[T] = _Pending(self)
        if self._closed:
            fut.set_exception(StoreError("the store is closed"))
            return fut
        loop = asyncio._get_running_loop()  # the fast form of get_running_loop, None outside
        if loop is None:  # the caller blocks on it, or commits nothing and lets the thread
            self._waiting.append((op, fut))
        elif loop in self._committing_loops:  # committed on the loop, after its ready callbacks
            self._waiting.append((op, fut))
            if loop not in self._lead_due:
                self._lead_due.add(loop)
                loop.call_soon(self._lead_on, loop)
        else:  # it will be awaited, never led: the thread commits it
            self._queue.put((op, fut))
        return fut

    def commit_on(self, loop: asyncio.AbstractEventLoop, on: bool = True) -> None:
        """Let writes submitted from `loop` (a loop of tasks that mostly wait for their
        writes) be committed on it: once per turn, after the callbacks ready then, so the
        writes of every task that ran in that turn share one commit and no thread hands off.
        The loop is blocked while it commits."""
        if on:
            self._committing_loops.add(loop)
        else:
            self._committing_loops.discard(loop)

    def _lead_on(self, loop: asyncio.AbstractEventLoop) -> None:
        self._lead_due.discard(loop)
        self.lead()

    def call(self, op: Callable[[Any], T]) -> T:
        return self.submit(op).result()

    submit_start = submit  # one writer: starts share its groups

    def at_next_sync(self, wake: Callable[[], Any]) -> None:
        """Call `wake` (quick, non-blocking) as the next commit syncs: a thread it wakes then
        runs while the disk works. The writer thread is woken too, so that without a commit
        coming it is called at once. Over a network (a commit may hang) it is called now."""
        if not self._policy.local:
            _call(wake)
            return
        self._at_sync.append(wake)
        if not self._closed:
            self._queue.put(_WAKE)
            return
        with self._commit_lock:  # the thread takes what is left in its last turn, under it
            calls: list[Callable[[], Any]] = []
            if self._conn is None:  # that turn is over: nobody else will
                calls, self._at_sync = self._at_sync, []
        for call in calls:
            _call(call)

    def idle(self) -> bool:
        return not self._waiting and self._queue.empty() and not self._commit_lock.locked()

    def backlog(self) -> int:
        return len(self._waiting) + self._queue.qsize() + self._commit_lock.locked()

    def close(self) -> None:
        """Commit everything already submitted, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()

    def lead(self, mine: Future | None = None) -> None:
        """Commit the waiting group in this thread, unless a commit is under way (its
        committer wakes the thread for what is left) or the writer is stopping (then the
        thread commits it). `mine`: the write this thread waits for."""
        if self._closed or not self._commit_lock.acquire(blocking=False):
            return
        later: tuple[list[tuple[Future, bool, Any]], list[Callable[[], Any]]] = ([], [])
        try:
            if self._conn is None:
                return
            batch, stopping = self._take()
            if stopping:  # closing meanwhile: hand the rest to the thread
                self._queue.put(_STOP)
            outcome = self._commit(batch) if batch else []
            later = self._take_later()  # left over if this commit did not sync
            if mine is not None and self._waiting and not stopping and self._policy.local:
                # submitted during the commit: the thread commits them at once (woken
                # below); the other callers of this group wake as that commit syncs
                self._later = [o for o in outcome if o[0] is not mine]
                outcome = [o for o in outcome if o[0] is mine]
        finally:
            self._commit_lock.release()
        if self._waiting:  # submitted during the commit, by callers that found it under way
            self._queue.put(_WAKE)
        _wake(*later)
        _resolve(outcome)

    # -- thread ------------------------------------------------------------------------------
    def _run(self, connect: Callable[[], Any]) -> None:
        try:
            conn = connect()
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._conn = conn
        self._ready.set_result(None)
        try:
            stopping = False
            while not stopping:
                try:
                    # writes submitted during the last commit are committed at once
                    item = _WAKE if self._waiting else self._queue.get(timeout=SAFETY_INTERVAL)
                except queue.Empty:
                    item = _WAKE  # writes left behind by callers that did not wait
                with self._commit_lock:
                    batch, stopping = self._take(item)
                    outcome = self._commit(batch) if batch else []
                    later = self._take_later()
                _wake(*later)
                _resolve(outcome)
        finally:
            with self._commit_lock:
                _close(self._conn)
                self._conn = None
                left, _ = self._take()  # submitted as the store closed
                later = self._take_later()
            _wake(*later)  # committed
            live = [(op, fut) for op, fut in left if fut.set_running_or_notify_cancel()]
            _resolve(_fail_all(live, StoreError("the store is closed")))

    def _take(
        self, item: Any = _WAKE, limit: int | None = None
    ) -> tuple[list[tuple[Op, Future]], bool]:
        """The next group (up to `limit`, else max_batch): the waiting writes, then the queued
        ones from `item` on; and whether the stop mark was reached."""
        batch: list[tuple[Op, Future]] = []
        waiting, limit = self._waiting, limit or self._max_batch
        while waiting and len(batch) < limit:
            batch.append(waiting.popleft())
        while True:
            if item is _STOP:
                return batch, True
            if item is not _WAKE:
                batch.append(item)
            if len(batch) >= limit:
                return batch, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False

    def _commit(self, batch: list[tuple[Op, Future]]) -> list[tuple[Future, bool, Any]]:
        """Commit the group; return each future's outcome, to be resolved without the lock."""
        live = [(op, fut) for op, fut in batch if fut.set_running_or_notify_cancel()]
        policy = self._policy
        isolate = False
        attempt = 0
        while True:
            conn = self._conn
            if conn is None:  # lost with an earlier group: open it again, or fail this one
                try:
                    conn = self._conn = self._connect()
                except Exception as exc:
                    delay = policy.retry_delay(exc, attempt)
                    if delay is None:
                        return _fail_all(live, exc)
                    attempt += 1
                    self._resolve_later()
                    time.sleep(delay)
                    continue
            committing = False
            try:
                results = self._apply(conn, live, isolate)
                if not isolate and not all(ok for ok, _ in results):
                    conn.execute("ROLLBACK")
                    isolate = True
                    results = self._apply(conn, live, isolate)
                for sql, rows in getattr(conn, "deferred", {}).items():
                    conn.executemany(sql, rows)  # one statement for the whole group
                self._resolve_later()  # the last group's callers run while this one syncs
                committing = True
                conn.execute("COMMIT")
            except BaseException as exc:
                if policy.broken(conn, exc):
                    _close(conn)
                    self._conn = None
                    if committing:  # it may have committed: the callers must look again
                        return _fail_all(live, policy.unavailable(exc))
                else:
                    _rollback(conn)
                delay = policy.retry_delay(exc, attempt)
                if delay is None:
                    return _fail_all(
                        live, policy.unavailable(exc) if policy.dooms_group(exc) else exc
                    )
                attempt += 1
                self._resolve_later()
                time.sleep(delay)
                continue
            return [(fut, ok, value) for (_, fut), (ok, value) in zip(live, results, strict=True)]

    def _take_later(self) -> tuple[list[tuple[Future, bool, Any]], list[Callable[[], Any]]]:
        """The wake-ups left for the next commit (outcomes committed already); under the lock."""
        later, calls = self._later, self._at_sync
        self._later, self._at_sync = [], []
        return later, calls

    def _resolve_later(self) -> None:
        if self._later or self._at_sync:
            _wake(*self._take_later())

    def _apply(
        self, conn: Any, live: list[tuple[Op, Future]], isolate: bool
    ) -> list[tuple[bool, Any]]:
        """Run the group; without `isolate`, stop at the first failure (it will be re-run).

        The group grows by what was submitted while BEGIN waited (for the lock, the server,
        or the GIL, which the callers just woken by the last commit hold while they prepare
        their next writes): those join this commit instead of waiting for the next one."""
        conn.execute(self._policy.begin)
        if len(live) < self._max_batch:
            more, stopping = self._take(limit=self._max_batch - len(live))
            if stopping:  # the thread stops after this group
                self._queue.put(_STOP)
            live.extend((op, fut) for op, fut in more if fut.set_running_or_notify_cancel())
        deferred: dict[str, list[tuple]] = {}
        conn.deferred = deferred
        results: list[tuple[bool, Any]] = []
        for op, _ in live:
            if isolate:
                marks = {sql: len(rows) for sql, rows in deferred.items()}
                conn.execute("SAVEPOINT op")
            try:
                value = op(conn)
            except Exception as exc:
                if self._policy.dooms_group(exc):
                    raise  # busy, I/O, a lost connection: the whole group is retried or failed
                if not isolate:
                    return [*results, (False, exc)]
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                for sql in list(deferred):  # drop what the failed operation deferred
                    del deferred[sql][marks.get(sql, 0) :]
                results.append((False, exc))
            else:
                if isolate:
                    conn.execute("RELEASE op")
                results.append((True, value))
        return results


def _rollback(conn: Any) -> None:
    try:
        conn.execute("ROLLBACK")
    except Exception:
        pass


def _close(conn: Any) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:
            pass


def _fail_all(live: list[tuple[Op, Future]], exc: BaseException) -> list[tuple[Future, bool, Any]]:
    err = exc if isinstance(exc, StoreError) else StoreError(f"commit failed: {exc}")
    if err is not exc:
        err.__cause__ = exc
    return [(fut, False, err) for _, fut in live]


def _wake(later: list[tuple[Future, bool, Any]], calls: list[Callable[[], Any]]) -> None:
    """Resolve `later` and make the `calls`; when a thread waits on one of those writes, only
    it is woken here, and it wakes the rest (each wake-up is a system call, and these are
    made just before a commit, on its path)."""
    if len(later) > 1 or (later and calls):
        for i, (fut, _, _) in enumerate(later):
            rest = later[:i] + later[i + 1 :]
            if isinstance(fut, _Pending) and fut.take_relay(rest, calls):
                _resolve([later[i]])
                return
    _resolve(later)
    for call in calls:
        _call(call)


def _call(wake: Callable[[], Any]) -> None:
    try:
        wake()
    except Exception:  # a wake-up must never fail the commit it rides on
        log.exception("a wake-up handed to the writer failed")


def _resolve(outcome: list[tuple[Future, bool, Any]]) -> None:
    for fut, ok, value in outcome:
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


class WriterPool:
    """Group-commit writers on their own connections, for a server that commits in parallel
    (PostgreSQL). New runs take the first writer, so that a start never waits behind a group
    of checkpoints; everything else goes to the other writers (the least busy), where it is
    grouped. Row locks order writes to the same rows across writers and processes."""

    def __init__(self, writers: list[GroupCommitWriter]) -> None:
        if len(writers) < 2:
            raise ValueError("a writer pool needs at least two writers")
        self._starts = writers[0]
        self._others = writers[1:]
        self._writers = writers

    def at_next_sync(self, wake: Callable[[], Any]) -> None:
        """`wake` at the next sync of the writer that commits new runs."""
        self._starts.at_next_sync(wake)

    def submit_start(self, op: Callable[[Any], T]) -> Future[T]:
        return self._starts.submit(op)

    def submit(self, op: Callable[[Any], T]) -> Future[T]:
        others = self._others
        if len(others) == 1:
            return others[0].submit(op)
        return min(others, key=lambda w: w.backlog()).submit(op)

    def call(self, op: Callable[[Any], T]) -> T:
        return self.submit(op).result()

    def close(self) -> None:
        for w in self._writers:
            w.close()
