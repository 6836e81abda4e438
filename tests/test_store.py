from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

import baton
from baton.store import RunRecord, RunStatus, StepRecord, open_store
from baton.store.records import WorkerRecord
from baton.store.sqlite import SQLiteStore
from baton.store.sqlite.migrations import SCHEMA_VERSION
from dbhelpers import columns, is_postgres, pg_target, query, tables


def _run(run_id: str, key: str | None = None, **fields: object) -> RunRecord:
    base: dict = dict(
        run_id=run_id,
        workflow="wf",
        version="1",
        status=RunStatus.ENQUEUED,
        queue="default",
        priority=0,
        available_at=0.0,
        correlation_id=run_id,
        input="{}",
        created_at=0.0,
        updated_at=0.0,
        idempotency_key=key,
    )
    base.update(fields)
    return RunRecord(**base)


def test_new_sqlite_store_is_wal_with_current_schema(sqlite_path: Path) -> None:
    store = SQLiteStore(sqlite_path)
    store.close()
    conn = sqlite3.connect(sqlite_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    version = conn.execute("SELECT value FROM baton_meta WHERE key='schema_version'").fetchone()
    assert int(version[0]) == SCHEMA_VERSION
    columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    assert {"owner", "fence", "lease_expires_at", "available_at", "priority"} <= columns


def test_new_store_has_the_current_schema(store_path: Path | str) -> None:
    open_store(store_path).close()
    version = query(store_path, "SELECT value FROM baton_meta WHERE key='schema_version'")
    assert version == [(str(SCHEMA_VERSION),)]
    assert {"owner", "fence", "lease_expires_at", "available_at", "priority"} <= set(
        columns(store_path, "runs")
    )


def test_reopening_keeps_data(store_path: Path | str) -> None:
    store = open_store(store_path)
    store.create_run(_run("r1"), []).result()
    store.close()
    store = open_store(store_path)
    assert store.get_run("r1") is not None
    store.close()


def test_store_with_newer_schema_is_refused(store_path: Path | str) -> None:
    open_store(store_path).close()
    query(store_path, "UPDATE baton_meta SET value='999' WHERE key='schema_version'")
    with pytest.raises(baton.SchemaVersionError) as info:
        open_store(store_path)
    assert info.value.found == 999 and info.value.supported == SCHEMA_VERSION
    assert query(store_path, "SELECT value FROM baton_meta WHERE key='schema_version'") == [
        ("999",)
    ]


def test_a_database_of_another_program_is_not_a_baton_store(store_path: Path | str) -> None:
    """A SQLite file, or a PostgreSQL schema, that holds other tables is left alone."""
    if is_postgres(store_path):
        _, schema = pg_target(str(store_path))
        query(store_path, f'CREATE SCHEMA "{schema}"')
    else:
        sqlite3.connect(store_path).close()  # the file, empty
    query(store_path, "CREATE TABLE customers (id INTEGER)")
    with pytest.raises(baton.NotABatonStore, match="customers"):
        open_store(store_path)
    assert query(store_path, "SELECT COUNT(*) FROM customers") == [(0,)]
    assert tables(store_path) == {"customers"}  # nothing was created


def test_junk_file_is_not_a_baton_store(sqlite_path: Path) -> None:
    sqlite_path.write_bytes(b"this is not a database, just some bytes" * 100)
    with pytest.raises(baton.NotABatonStore):
        SQLiteStore(sqlite_path)


def test_unusable_locations_get_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(baton.StoreUnavailable, match="file"):
        SQLiteStore(blocker / "sub" / "baton.db")
    with pytest.raises(baton.StoreUnavailable, match="directory"):
        SQLiteStore(tmp_path)


def test_open_store_understands_postgres_urls(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from baton.store.postgres import PostgresStore

    _, schema = pg_target(pg_url)
    store = open_store(pg_url)
    assert isinstance(store, PostgresStore) and store.schema == schema
    store.close()
    monkeypatch.setenv("BATON_STORE", pg_url)
    store = open_store()
    assert isinstance(store, PostgresStore) and store.schema == schema
    store.close()


def test_open_store_understands_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(f"sqlite:///{tmp_path}/a.db")
    assert Path(store.path) == tmp_path / "a.db"  # type: ignore[attr-defined]
    store.close()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BATON_STORE", "b.db")
    store = open_store()
    assert (tmp_path / "b.db").exists()
    store.close()
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(tmp_path / "c.db", synchronous="SOMETIMES")


def test_idempotency_key_returns_the_existing_run(store_path: Path) -> None:
    store = open_store(store_path)
    _, created = store.create_run(_run("r1", key="k"), []).result()
    again, created_again = store.create_run(_run("r2", key="k"), []).result()
    assert created and not created_again
    assert again.run_id == "r1"
    assert store.get_run("r2") is None
    store.close()


def test_group_commit_serves_many_threads_and_keeps_every_write(store_path: Path) -> None:
    store = open_store(store_path)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            futures = [store.create_run(_run(f"t{n}-{i}"), []) for i in range(200)]
            for fut in futures:
                fut.result()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.count_runs() == {"ENQUEUED": 1600}
    store.close()


def _integrity_error(store: Path | str) -> type[Exception]:
    if is_postgres(store):
        import psycopg

        return psycopg.IntegrityError
    return sqlite3.IntegrityError


def test_a_failing_operation_does_not_spoil_its_group(store_path: Path) -> None:
    store = open_store(store_path)
    store.create_run(_run("r1"), []).result()
    bad = store.write(lambda conn: conn.execute("INSERT INTO runs (run_id) VALUES ('r1')"))
    good = store.create_run(_run("r2"), [])
    with pytest.raises(_integrity_error(store_path)):
        bad.result()
    good.result()
    assert store.get_run("r2") is not None
    store.close()


def test_claims_follow_priority_then_age_and_bump_the_fence(store_path: Path) -> None:
    store = open_store(store_path)
    store.create_run(_run("old-low", priority=0, available_at=1.0), []).result()
    store.create_run(_run("new-high", priority=5, available_at=2.0), []).result()
    store.create_run(_run("future", priority=9, available_at=100.0), []).result()
    claimed = store.claim_runs("w1", None, 10, now=10.0, lease=30, source="t").result()
    assert [r.run_id for r in claimed] == ["new-high", "old-low"]
    assert all(r.status == "RUNNING" and r.owner == "w1" and r.fence == 1 for r in claimed)
    assert store.next_due(None) == 100.0
    store.close()


def test_writes_with_a_stale_fence_are_refused(store_path: Path) -> None:
    store = open_store(store_path)
    store.create_run(_run("r1"), []).result()
    (run,) = store.claim_runs("w1", None, 1, now=1.0, lease=30, source="t").result()
    step = StepRecord("r1", 1, "s", "h", "SUCCEEDED", 1, 1.0, 1.0, "1", None, "w1")
    with pytest.raises(baton.FenceLost):
        store.save_step(run.fence + 1, step, []).result()
    store.save_step(run.fence, step, []).result()
    with pytest.raises(baton.FenceLost):  # a checkpoint is written once
        store.save_step(run.fence, step, []).result()
    assert len(store.load_steps("r1")) == 1
    store.close()


def test_a_write_nobody_waits_for_is_committed_anyway(store_path: Path) -> None:
    # submitted from a thread that never blocks on it: no caller leads its commit
    store = open_store(store_path)
    fut = store.create_run(_run("unwaited"), [])
    done = threading.Event()
    fut.add_done_callback(lambda _: done.set())
    assert done.wait(10), "the writer thread commits what no caller commits"
    assert store.get_run("unwaited") is not None
    store.close()


def test_writes_awaited_from_an_event_loop_are_committed_by_the_writer(store_path: Path) -> None:
    import asyncio

    store = open_store(store_path)

    async def main() -> list:
        futures = [store.create_run(_run(f"a{i}"), []) for i in range(50)]
        return await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))

    results = asyncio.run(main())
    assert all(created for _, created in results)
    assert store.count_runs() == {"ENQUEUED": 50}
    store.close()


def test_waiting_callers_and_the_writer_thread_share_commits_without_losing_writes(
    store_path: Path,
) -> None:
    import asyncio

    store = open_store(store_path)
    errors: list[BaseException] = []

    def blocking(n: int) -> None:  # each waits for its own write, leading when it can
        try:
            for i in range(100):
                store.create_run(_run(f"b{n}-{i}"), []).result()
        except BaseException as exc:
            errors.append(exc)

    async def awaiting() -> None:  # never leads: the writer thread commits these
        for i in range(100):
            await asyncio.wrap_future(store.create_run(_run(f"l-{i}"), []))

    threads = [threading.Thread(target=blocking, args=(n,)) for n in range(4)]
    threads.append(threading.Thread(target=lambda: asyncio.run(awaiting())))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.count_runs() == {"ENQUEUED": 500}
    store.close()


@pytest.mark.parametrize("close_at_once", [False, True])
def test_writes_left_to_the_next_commit_are_resolved(store_path: Path, close_at_once: bool) -> None:
    # the caller leading a group finds a write submitted during its commit: it returns with
    # its own write resolved and leaves the other futures of its group to the next commit
    store = open_store(store_path)
    others = [store.create_run(_run(f"other-{i}"), []) for i in range(3)]
    during: list = []

    def submits_another(conn: object) -> str:
        during.append(store.create_run(_run("during"), []))
        return "mine"

    assert store.write(submits_another).result() == "mine"
    if close_at_once:
        store.close()
    for fut in [*others, *during]:
        assert fut.result(timeout=10)[1]  # created
    if not close_at_once:
        assert store.count_runs() == {"ENQUEUED": 4}
        store.close()
    reopened = open_store(store_path)
    assert reopened.count_runs() == {"ENQUEUED": 4}
    reopened.close()


def test_wake_ups_handed_to_the_writer_are_made_with_or_without_a_commit(
    store_path: Path,
) -> None:
    store = open_store(store_path)
    woken: list[str] = []
    alone = threading.Event()

    store.at_next_sync(alone.set)  # no commit follows: the writer thread makes it
    assert alone.wait(10)

    def fails() -> None:
        woken.append("fails")
        raise RuntimeError("a broken wake-up")

    store.at_next_sync(fails)
    after = threading.Event()
    store.at_next_sync(lambda: (woken.append("next"), after.set()))
    store.create_run(_run("after"), []).result()  # a commit follows: it makes them
    assert after.wait(10)
    assert woken == ["fails", "next"]
    assert store.get_run("after") is not None  # a failing wake-up spoils nothing
    store.close()
    store.at_next_sync(lambda: woken.append("closed"))  # closed: made at once
    assert woken == ["fails", "next", "closed"]


def _worker(worker_id: str, heartbeat_at: float) -> WorkerRecord:
    return WorkerRecord(worker_id, "host-x", 1, 0.0, 0.0, heartbeat_at, [])


def test_a_worker_that_beat_since_it_was_judged_dead_keeps_its_row_and_runs(
    store_path: Path,
) -> None:
    store = open_store(store_path)
    store.register_worker(_worker("w1", 1.0)).result()
    store.create_run(_run("r1"), []).result()
    assert [r.run_id for r in store.claim_runs("w1", None, 1, 1.0, 30, "t").result()] == ["r1"]
    (judged,) = store.list_workers()  # read by a sweep: heartbeat 1.0, long ago
    store.heartbeat("w1", 50.0).result()  # then the worker beats
    assert store.requeue_orphans([judged], 60.0, "t").result() == []
    assert [w.worker_id for w in store.list_workers()] == ["w1"]
    assert store.get_run("r1").owner == "w1"  # type: ignore[union-attr]
    (judged,) = store.list_workers()  # judged again, and it has not beaten since: gone
    assert [r.run_id for r in store.requeue_orphans([judged], 99.0, "t").result()] == ["r1"]
    assert store.list_workers() == []
    store.close()


def test_a_claim_heartbeats_its_worker_and_takes_nothing_once_it_was_declared_dead(
    store_path: Path,
) -> None:
    store = open_store(store_path)
    store.create_run(_run("r1"), []).result()
    claimed = store.claim_runs("w1", None, 5, 1.0, 30, "t", alive_at=7.0).result()
    assert list(claimed) == [] and claimed.unregistered  # no row: it must register first
    assert store.get_run("r1").status == RunStatus.ENQUEUED  # type: ignore[union-attr]
    store.register_worker(_worker("w1", 5.0)).result()
    claimed = store.claim_runs("w1", None, 5, 1.0, 30, "t", alive_at=7.0).result()
    assert [r.run_id for r in claimed] == ["r1"] and not claimed.unregistered
    assert [w.heartbeat_at for w in store.list_workers()] == [7.0]
    store.close()


def test_events_are_found_by_correlation_id_however_they_are_correlated(
    store_path: Path,
) -> None:
    from baton.core.events import CloudEvent

    store = open_store(store_path)

    def event(run: str | None, corr: str | None, seq: int) -> CloudEvent:
        return CloudEvent("t.x", "test", run, {"n": seq}, corr, run, time=float(seq))

    store.ingest_events(
        [
            event("r1", "r1", 1),  # the default: correlated by its own run
            event("r2", "order-7", 2),  # a run with a correlation id of its own
            event(None, "order-7", 3),  # no run
            event("order-7", "order-7", 4),  # a run whose id is the correlation id
            event("r3", None, 5),  # none
            event("r1", "order-7", 6),
        ]
    ).result()
    by_corr = store.list_events(correlation_id="order-7")
    assert [e.data for e in by_corr] == ['{"n":2}', '{"n":3}', '{"n":4}', '{"n":6}']
    assert [e.data for e in store.list_events(correlation_id="r1")] == ['{"n":1}']
    assert [e.data for e in store.list_events(correlation_id="order-7", limit=2)] == [
        '{"n":2}',
        '{"n":3}',
    ]
    after = by_corr[1].seq
    assert [e.data for e in store.list_events(correlation_id="order-7", after=after)] == [
        '{"n":4}',
        '{"n":6}',
    ]
    assert [e.data for e in store.list_events(run_id="r1", correlation_id="order-7")] == ['{"n":6}']
    assert [e.data for e in store.list_events(correlation_id="order-7", type="t.y")] == []
    store.close()


def test_events_are_found_by_type_whether_the_type_index_holds_them(store_path: Path) -> None:
    """The type index leaves out the types every run logs; a query by type finds the same
    events either way, routine, indexed and mixed types alike, in seq order after a cursor."""
    from baton.core.events import CloudEvent
    from baton.store.sql.base import ROUTINE_TYPES

    store = open_store(store_path)
    kinds = [*sorted(ROUTINE_TYPES), "baton.run.failed", "baton.step.retrying", "shop.order.paid"]
    logged = [CloudEvent(kinds[i % len(kinds)], "test", f"r{i % 5}", {"n": i}) for i in range(70)]
    store.ingest_events(logged).result()
    everything = store.list_events(limit=1000)
    assert len(everything) == 70
    cursor = everything[20].seq
    for wanted in [*([k] for k in kinds), ["baton.run.started", "baton.run.failed"], kinds[-2:]]:
        expected = [e.id for e in everything if e.type in wanted]
        assert [e.id for e in store.list_events(types=wanted, limit=1000)] == expected
        assert [e.id for e in store.list_events(types=wanted, after=cursor, limit=3)] == [
            e.id for e in everything if e.type in wanted and e.seq > cursor
        ][:3]
        if len(wanted) == 1:
            assert [e.id for e in store.list_events(type=wanted[0], limit=1000)] == expected
            in_run = [e.id for e in everything if e.type in wanted and e.run_id == "r2"]
            assert [e.id for e in store.list_events("r2", wanted[0], limit=1000)] == in_run
    store.close()


def test_routine_events_leave_the_type_index(sqlite_path: Path) -> None:
    """What every run logs is not written into the type index (a page per type per commit);
    a query for another type reads that index."""
    from baton.store.sql.base import _TYPE_INDEXED

    app = baton.App(sqlite_path)

    @app.step()
    def bump(x: int) -> int:
        return x + 1

    @app.workflow()
    def once(x: int) -> int:
        return bump(x)

    assert [app.run(once, i) for i in range(3)] == [1, 2, 3]
    app.shutdown()
    conn = sqlite3.connect(sqlite_path)
    logged = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    indexed = conn.execute(
        f"SELECT COUNT(*) FROM events INDEXED BY events_type WHERE {_TYPE_INDEXED}"
    ).fetchone()[0]
    assert logged == 12 and indexed == 0
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT seq FROM events "
        f"WHERE seq > 0 AND type = 'baton.run.failed' AND {_TYPE_INDEXED} ORDER BY seq"
    ).fetchall()
    assert "events_type" in plan[0][3]
    conn.close()


def test_a_version_4_store_is_migrated_with_its_events(sqlite_path: Path) -> None:
    """Migrations 5 and 6 rebuild the type index and the events table of a store written by
    version 4: every event kept with its seq, new ones numbered on from the highest, no
    counter page left for them."""
    from baton.store.sqlite.migrations import MIGRATIONS

    conn = sqlite3.connect(sqlite_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE baton_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    for script in MIGRATIONS[:4]:
        conn.executescript(script)
    conn.execute("INSERT INTO baton_meta VALUES ('schema_version', '4')")
    for i, kind in enumerate(["baton.run.started", "baton.run.failed", "baton.step.completed"]):
        conn.execute(
            "INSERT INTO events (id, type, source, time, run_id) VALUES (?, ?, 'old', ?, 'r')",
            (f"e{i}", kind, float(i)),
        )
    conn.close()
    before = query(sqlite_path, "SELECT seq, id FROM events ORDER BY seq")
    store = SQLiteStore(sqlite_path)
    assert [e.id for e in store.list_events(type="baton.run.failed")] == ["e1"]
    assert [e.id for e in store.list_events(type="baton.step.completed")] == ["e2"]
    assert [(e.seq, e.id) for e in store.list_events()] == before
    from baton.core.events import CloudEvent

    store.ingest_events([CloudEvent("t.new", "test", "r", {})]).result()
    assert store.last_event_seq() == before[-1][0] + 1
    store.close()
    assert query(sqlite_path, "SELECT value FROM baton_meta WHERE key='schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]
    (sql,) = query(sqlite_path, "SELECT sql FROM sqlite_master WHERE name = 'events_type'")[0]
    assert "NOT IN" in sql
    (table,) = query(sqlite_path, "SELECT sql FROM sqlite_master WHERE name = 'events'")[0]
    assert "AUTOINCREMENT" not in table
    assert query(sqlite_path, "SELECT * FROM sqlite_sequence WHERE name = 'events'") == []


def test_a_write_future_behaves_as_a_concurrent_future() -> None:
    """Write futures wait on a lock of their own; wait, as_completed, callbacks, cancelling
    and asyncio.wrap_future work on them as on the base class."""
    import asyncio
    from concurrent import futures

    from baton.store.sql.write_future import WriteFuture

    fut = WriteFuture()
    assert fut.set_running_or_notify_cancel() and fut.running()
    threading.Timer(0.05, fut.set_result, (5,)).start()
    assert fut.result(timeout=5) == 5 and fut.done() and fut.exception() is None
    with pytest.raises(futures.InvalidStateError):
        fut.set_result(6)

    late = WriteFuture()
    with pytest.raises(futures.TimeoutError):
        late.result(timeout=0.01)
    late.set_exception(ValueError("no"))
    with pytest.raises(ValueError):
        late.result()
    assert isinstance(late.exception(), ValueError)

    group = [WriteFuture() for _ in range(3)]
    threading.Timer(0.05, group[1].set_result, (1,)).start()
    done, _ = futures.wait(group, timeout=5, return_when=futures.FIRST_COMPLETED)
    assert done == {group[1]}
    group[0].set_result(0)
    group[2].set_exception(KeyError("k"))
    assert set(futures.as_completed(group, timeout=5)) == set(group)

    seen: list[futures.Future] = []
    called = WriteFuture()
    called.add_done_callback(seen.append)
    called.set_result(None)
    called.add_done_callback(seen.append)  # done already: called at once
    assert seen == [called, called]

    dropped = WriteFuture()
    assert dropped.cancel() and dropped.cancelled()
    assert not dropped.set_running_or_notify_cancel()
    with pytest.raises(futures.CancelledError):
        dropped.result()
    taken = WriteFuture()
    taken.set_running_or_notify_cancel()
    assert not taken.cancel()

    async def awaited() -> tuple[int, bool]:
        soon = WriteFuture()
        threading.Timer(0.05, soon.set_result, (7,)).start()
        value = await asyncio.wrap_future(soon)
        abandoned = WriteFuture()
        task = asyncio.ensure_future(asyncio.wrap_future(abandoned))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.01)
        return value, abandoned.cancelled()

    assert asyncio.run(awaited()) == (7, True)


def test_a_woken_waiter_wakes_the_rest_of_its_group(sqlite_path: Path) -> None:
    """Writes resolved together, whose callers block on them: the resolving thread wakes one
    caller, which resolves the others and makes the handed-over calls; nothing is left."""
    from baton.store.sql import writer as w

    store = SQLiteStore(sqlite_path)
    pending = [w._Pending(store._writer) for _ in range(4)]
    for fut in pending:
        fut.set_running_or_notify_cancel()
    got: dict[int, object] = {}
    callers = {threading.get_ident()}
    called: list[int] = []

    def wait(i: int) -> None:
        callers.add(threading.get_ident())
        got[i] = pending[i].result()

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while not all(f._blocked for f in pending) and time.monotonic() < deadline:
        time.sleep(0.005)
    w._wake(
        [(f, True, i) for i, f in enumerate(pending)],
        [lambda: called.append(threading.get_ident())],
    )
    for thread in threads:
        thread.join(5)
    assert got == {0: 0, 1: 1, 2: 2, 3: 3}
    assert len(called) == 1 and called[0] != threading.get_ident()  # made by a woken caller
    assert called[0] in callers
    store.close()
