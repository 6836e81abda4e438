"""EventTail on PostgreSQL: an event's seq is drawn at insert, not at commit, so a reader can
see seq N+1 before seq N commits. The tail must wait at such a gap while its transaction is
open, never skip it, and skip it for good once that transaction has rolled back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from baton.core.events import CloudEvent
from baton.core.ids import new_id
from baton.store import open_store
from baton.store.records import EventRecord
from baton.store.tail import EventTail
from dbhelpers import pg_target

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def store(pg_url: str) -> Iterator[Any]:
    s = open_store(pg_url)
    yield s
    s.close()


class OpenInsert:
    """An event inserted into the store's schema by a transaction held open."""

    def __init__(self, url: str, type: str) -> None:
        import psycopg

        dsn, schema = pg_target(url)
        self.conn = psycopg.connect(dsn, connect_timeout=10)  # a transaction until commit
        self.conn.execute(f'SET search_path TO "{schema}"')
        self.conn.commit()
        self.id = new_id()
        row = self.conn.execute(
            "INSERT INTO events (id, type, source, time) VALUES (%s, %s, %s, %s) RETURNING seq",
            (self.id, type, "test://tail", time.time()),
        ).fetchone()
        assert row is not None
        self.seq = int(row[0])

    def commit(self) -> None:
        if not self.conn.closed:
            self.conn.commit()
            self.conn.close()

    def rollback(self) -> None:
        self.conn.rollback()
        self.conn.close()


def commit_event(store: Any, type: str) -> str:
    event = CloudEvent(type=type, source="test://tail", time=time.time())
    store.append_events([event]).result()
    return event.id


def read_until(tail: EventTail, count: int, timeout: float = 10.0) -> list[EventRecord]:
    got: list[EventRecord] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        assert time.monotonic() < deadline, f"the tail gave {len(got)} of {count} events"
        got += tail.read()
        time.sleep(0.005)
    return got


def test_a_late_commit_holds_the_tail_until_it_commits(store: Any, pg_url: str) -> None:
    commit_event(store, "test.before")
    tail = EventTail(store)
    (before,) = read_until(tail, 1)
    assert before.type == "test.before"

    held = OpenInsert(pg_url, "test.first")  # draws the lower seq, commits last
    second_id = commit_event(store, "test.second")
    assert [e.id for e in store.list_events(after=before.seq)] == [second_id]  # visible
    for _ in range(20):  # the tail waits at the gap, however often it is asked
        assert tail.read() == []
        time.sleep(0.01)
    assert tail.position == before.seq

    held.commit()
    first, second = read_until(tail, 2)
    assert (first.id, first.seq, first.type) == (held.id, held.seq, "test.first")
    assert (second.id, second.type) == (second_id, "test.second")
    assert first.seq < second.seq
    assert tail.read() == []


def test_a_rolled_back_insert_leaves_a_gap_the_tail_skips(store: Any, pg_url: str) -> None:
    tail = EventTail(store)
    held = OpenInsert(pg_url, "test.doomed")
    after_id = commit_event(store, "test.after")
    for _ in range(10):
        assert tail.read() == []
        time.sleep(0.01)

    held.rollback()
    (after,) = read_until(tail, 1)  # does not wait forever at a seq that will never come
    assert after.id == after_id and after.seq > held.seq
    assert store.list_events() == [after]  # the gap is in the log for good

    later_id = commit_event(store, "test.later")
    (later,) = read_until(tail, 1)
    assert later.id == later_id


def test_several_open_inserts_commit_out_of_order(store: Any, pg_url: str) -> None:
    tail = EventTail(store)
    a = OpenInsert(pg_url, "test.a")
    b = OpenInsert(pg_url, "test.b")
    c_id = commit_event(store, "test.c")
    b.commit()  # b is visible but a (lower) is not: nothing yet
    for _ in range(10):
        assert tail.read() == []
        time.sleep(0.01)
    a.rollback()
    got = read_until(tail, 2)
    assert [e.id for e in got] == [b.id, c_id]
    assert a.seq < b.seq < got[1].seq


def test_event_seq_by_id_and_the_last_seq(store_path: Any) -> None:
    store = open_store(store_path)
    try:
        check_event_seq(store)
    finally:
        store.close()


def check_event_seq(store: Any) -> None:
    assert store.last_event_seq() == 0
    first = commit_event(store, "test.x")
    second = commit_event(store, "test.y")
    events = store.list_events()
    assert store.event_seq(first) == events[0].seq
    assert store.event_seq(second) == events[1].seq == store.last_event_seq()
    assert store.event_seq("no-such-id") is None
