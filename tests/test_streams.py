"""WebSocket streams of the event log, over real HTTP on loopback, on both backends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

import baton
from baton.core.roles import Role
from baton.server.api import create_api
from baton.server.hub import EventHub
from conftest import wait_until
from serverkit import client, serving

pytestmark = pytest.mark.timeout(120)


def connect(uri: str, **options: Any) -> Any:
    """A client that reads ahead without bound: a client that stops reading (its queue full)
    cannot see the node's answer to its close, and waits out its close timeout."""
    options.setdefault("max_queue", None)
    return websockets.connect(uri, **options)


@dataclass(frozen=True)
class Token:
    name: str
    token: str
    role: Role


VIEWER = Token("vic", "viewer-secret", Role.VIEWER)
OPERATOR = Token("olga", "operator-secret", Role.OPERATOR)


@dataclass
class Node:
    app: baton.App
    url: str
    hub: EventHub
    tokens: bool = False

    @property
    def ws(self) -> str:
        return "ws" + self.url.removeprefix("http")

    def ingest(self, events: list[dict[str, Any]], token: str | None = None) -> None:
        with client(self.url, token) as http:
            r = http.post("/api/v1/events", json={"events": events})
            assert r.status_code == 202, r.text

    def store_events(self, **query: Any) -> list[dict[str, Any]]:
        """The log's events for a filter, through the REST query (all pages)."""
        found: list[dict[str, Any]] = []
        after = 0
        with client(self.url, OPERATOR.token if self.tokens else None) as http:
            while True:
                r = http.get("/api/v1/events", params={**query, "after": after, "limit": 1000})
                assert r.status_code == 200, r.text
                page = r.json()
                found += page["items"]
                if not page["items"]:
                    return found
                after = page["next_after"]


def build(store: str | Path) -> baton.App:
    app = baton.App(store, poll_interval=0.05)

    @app.step(name="inc")
    def inc(x: int) -> int:
        return x + 1

    @app.workflow(name="alpha")
    def alpha(x: int) -> int:
        return inc(inc(x))

    @app.workflow(name="beta")
    def beta(x: int) -> int:
        return inc(x)

    @app.workflow(name="gated")
    def gated() -> Any:
        first = inc(0)
        got = baton.wait_for_signal("go", timeout=600)
        return inc(first + got)

    return app


@contextlib.contextmanager
def node(
    store: str | Path, *, tokens: bool = False, queue_size: int | None = None
) -> Iterator[Node]:
    app = build(store)
    app.launch()
    api = create_api(app, tokens=[VIEWER, OPERATOR] if tokens else ())
    hub = api.state.control.extras["hub"]
    if queue_size is not None:
        hub.queue_size = queue_size
    try:
        with serving(api) as url:
            yield Node(app, url, hub, tokens)
    finally:
        app.shutdown(timeout=5)


def outside(type: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"type": type, "source": "test://streams", "data": {"n": n}, **extra}


async def receive(ws: Any, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"got {len(got)} of {count} events"
        got.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
    return got


async def quiet(ws: Any, seconds: float = 0.3) -> list[dict[str, Any]]:
    """What arrives within `seconds` (expected: nothing more)."""
    extra: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        while True:
            extra.append(json.loads(await asyncio.wait_for(ws.recv(), seconds)))
    return extra


async def closed_with(url: str, **options: Any) -> tuple[int, str]:
    async with connect(url, **options) as ws:
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), 10)
    assert caught.value.rcvd is not None, "closed without a close frame"
    return caught.value.rcvd.code, caught.value.rcvd.reason


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [e["seq"] for e in events]


# -- live and in order ---------------------------------------------------------------------


def test_live_events_of_running_workflows_arrive_in_order(store_path: str | Path) -> None:
    with node(store_path) as n:

        async def main() -> None:
            url = f"{n.ws}/api/v1/events?workflow=gated"
            async with connect(url) as ws:
                handles = [n.app.start("gated") for _ in range(3)]
                wait_until(
                    lambda: all(n.app.get_run(h.id).status == "WAITING" for h in handles),
                    what="runs waiting",
                )
                for h in handles:
                    n.app.signal(h.id, "go", 5)
                for h in handles:
                    assert h.result(timeout=20) == 7
                expected = n.store_events(workflow="gated")
                got = await receive(ws, len(expected))
                assert await quiet(ws) == []
            assert got == expected
            assert seqs(got) == sorted(set(seqs(got)))
            for h in handles:
                mine = [e["type"] for e in got if e["runid"] == h.id]
                assert mine[0] == "baton.run.enqueued" and mine[-1] == "baton.run.succeeded"
                assert "baton.run.waiting" in mine and "baton.signal.received" in mine

            async with connect(f"{n.ws}/api/v1/runs/{handles[1].id}/events") as ws:
                mine = [e for e in expected if e["runid"] == handles[1].id]
                assert await receive(ws, len(mine)) == mine  # replayed from the store
                assert await quiet(ws) == []

        asyncio.run(main())


def test_a_run_stream_follows_its_run_from_its_start(store_path: str | Path) -> None:
    with node(store_path) as n:
        handle = n.app.start("gated")
        wait_until(lambda: n.app.get_run(handle.id).status == "WAITING", what="waiting")

        async def main() -> None:
            async with connect(f"{n.ws}/api/v1/runs/{handle.id}/events") as ws:
                before = n.store_events(run_id=handle.id)
                assert await receive(ws, len(before)) == before
                n.app.signal(handle.id, "go", 1)
                assert handle.result(timeout=20) == 3
                everything = n.store_events(run_id=handle.id)
                rest = await receive(ws, len(everything) - len(before))
                assert before + rest == everything
                assert rest[-1]["type"] == "baton.run.succeeded"
                assert all(e["data"]["workflow"] == "gated" for e in everything)

        asyncio.run(main())


# -- filters -------------------------------------------------------------------------------


def expected_for(name: str, everything: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """What the stream of FILTERS[name] should carry, worked out from the whole log."""
    test = {
        "type": lambda e: e["type"] == "baton.run.succeeded",
        "types": lambda e: e["type"] in ("baton.run.succeeded", "test.ping"),
        "prefix": lambda e: e["type"].startswith("baton.step."),
        "prefixes": lambda e: e["type"].startswith(("baton.step.", "test.")),
        "star": lambda e: True,
        "workflow": lambda e: e["runid"] is not None and e["data"]["workflow"] == "beta",
        "correlation": lambda e: e["correlationid"] == "c-2",
        "run": lambda e: e["runid"] == run_id,
        "mixed": lambda e: e["correlationid"] == "c-2" and e["type"].startswith("baton.run."),
        "all": lambda e: True,
    }[name]
    return [e for e in everything if test(e)]


FILTERS = {
    "type": "type=baton.run.succeeded",
    "types": "type=baton.run.succeeded&type=test.ping",
    "prefix": "type=baton.step.*",
    "prefixes": "type=baton.step.*&type=test.*",
    "star": "type=*&type=test.ping",
    "workflow": "workflow=beta",
    "correlation": "correlation_id=c-2",
    "run": "run_id={run_id}",
    "mixed": "correlation_id=c-2&type=baton.run.*",
    "all": "",
}


def test_filters_live_and_replayed(store_path: str | Path) -> None:
    with node(store_path) as n:

        async def main() -> None:
            n.ingest([outside("test.pong", 0, correlationid="c-2")])  # history, not live
            target = n.app.start("gated", correlation_id="c-2")
            wait_until(lambda: n.app.get_run(target.id).status == "WAITING", what="waiting")
            wait_until(lambda: n.hub.position >= n.store_events()[-1]["seq"], what="hub")
            start = n.hub.position
            streams = {
                name: await connect(f"{n.ws}/api/v1/events?{query.format(run_id=target.id)}")
                for name, query in FILTERS.items()
            }
            try:
                handles = [
                    n.app.start("alpha", 1, correlation_id="c-1"),
                    n.app.start("beta", 2, correlation_id="c-2"),
                    n.app.start("alpha", 3, correlation_id="c-2"),
                    n.app.start("beta", 4),
                ]
                n.ingest([outside("test.ping", i, correlationid="c-2") for i in range(3)])
                n.ingest([outside("test.pong", 9)])
                n.app.signal(target.id, "go", 1)
                for h in [*handles, target]:
                    h.result(timeout=20)
                everything = n.store_events()
                for name, ws in streams.items():
                    want = [
                        e for e in expected_for(name, everything, target.id) if e["seq"] > start
                    ]
                    assert want, name
                    got = await receive(ws, len(want))
                    assert got == want, name
                    assert await quiet(ws, 0.2) == [], name
            finally:
                for ws in streams.values():
                    await ws.close()

            # the same filters replayed from the store, up to the hub and on
            for name, query in FILTERS.items():
                url = f"{n.ws}/api/v1/events?{query.format(run_id=target.id)}&after=0"
                want = expected_for(name, everything, target.id)
                async with connect(url) as ws:
                    assert await receive(ws, len(want)) == want, name
                    assert await quiet(ws, 0.2) == [], name
            # the store's own filters agree with the streams'
            assert n.store_events(workflow="beta") == expected_for("workflow", everything, "")
            assert n.store_events(correlation_id="c-2") == expected_for(
                "correlation", everything, ""
            )
            assert any(
                e["type"] == "test.ping" for e in expected_for("correlation", everything, "")
            )

        asyncio.run(main())


# -- resuming ------------------------------------------------------------------------------


class Producer:
    """Keeps starting runs and ingesting events until stopped."""

    def __init__(self, n: Node) -> None:
        self.n = n
        self.stop = threading.Event()
        self.handles: list[Any] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        i = 0
        try:
            with client(self.n.url) as http:
                while not self.stop.is_set():
                    self.handles.append(self.n.app.start("beta" if i % 2 else "alpha", i))
                    batch = [outside("test.tick", i * 10 + k) for k in range(5)]
                    r = http.post("/api/v1/events", json={"events": batch})
                    assert r.status_code == 202, r.text
                    i += 1
                    time.sleep(0.01)
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Producer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(20)
        for h in self.handles:
            h.result(timeout=30)
        assert self.error is None, self.error


@pytest.mark.parametrize("query", ["", "type=baton.run.*&type=test.tick"])
def test_reconnecting_with_after_gets_every_event_exactly_once(
    store_path: str | Path, query: str
) -> None:
    with node(store_path) as n:

        async def main() -> None:
            got: list[dict[str, Any]] = []
            base = f"{n.ws}/api/v1/events?{query}"
            with Producer(n):
                await asyncio.sleep(0.1)
                for round_no in range(6):
                    if not got:
                        url = f"{base}&after=0"
                    elif round_no % 2:
                        url = f"{base}&after={got[-1]['seq']}"
                    else:
                        url = f"{base}&after={got[-1]['id']}"
                    async with connect(url) as ws:
                        got += await receive(ws, 15 + 7 * round_no)
                    await asyncio.sleep(0.15)  # away while runs go on
            # every run has finished: read on to the end of the log
            expected = n.store_events()
            if query:
                expected = [
                    e
                    for e in expected
                    if e["type"].startswith("baton.run.") or e["type"] == "test.tick"
                ]
            async with connect(f"{base}&after={got[-1]['seq']}") as ws:
                got += await receive(ws, len(expected) - len(got))
                assert await quiet(ws) == []
            assert len(seqs(got)) == len(set(seqs(got))), "duplicates"
            assert got == expected

        asyncio.run(main())


def test_a_late_commit_on_postgres_reaches_the_stream_in_order(pg_url: str) -> None:
    from test_tail import OpenInsert

    with node(pg_url) as n:

        async def main() -> None:
            async with connect(f"{n.ws}/api/v1/events?type=test.*") as ws:
                held = OpenInsert(pg_url, "test.first")  # the lower seq, committed last
                try:
                    n.ingest([outside("test.second", 2)])
                    assert await quiet(ws, 0.5) == []  # held back at the gap
                finally:
                    held.commit()
                first, second = await receive(ws, 2)
                assert (first["id"], first["seq"]) == (held.id, held.seq)
                assert second["type"] == "test.second" and second["seq"] > first["seq"]
                assert await quiet(ws, 0.2) == []

                held = OpenInsert(pg_url, "test.doomed")
                n.ingest([outside("test.third", 3)])
                assert await quiet(ws, 0.3) == []
                held.rollback()
                (third,) = await receive(ws, 1)  # the gap is skipped once it is for good
                assert third["type"] == "test.third"
            async with connect(f"{n.ws}/api/v1/events?type=test.*&after=0") as ws:
                replayed = await receive(ws, 3)
                assert replayed == [first, second, third]

        asyncio.run(main())


def test_a_long_replay_overtaken_by_live_events_loses_nothing(sqlite_path: Path) -> None:
    with node(sqlite_path, queue_size=100) as n:
        n.hub.batch = 10  # the hub hands out small batches: a replay's queue overflows soon
        for start in range(0, 10_000, 1000):
            n.ingest([outside("test.old", start + i) for i in range(1000)])
        stop = threading.Event()

        def pour() -> None:
            with client(n.url) as http:
                for i in range(0, 3000, 50):
                    if stop.is_set():
                        return
                    batch = [outside("test.new", i + k) for k in range(50)]
                    assert http.post("/api/v1/events", json={"events": batch}).status_code == 202

        async def main() -> None:
            pourer = threading.Thread(target=pour)
            pourer.start()
            try:
                await asyncio.sleep(0.05)
                async with connect(f"{n.ws}/api/v1/events?after=0") as ws:
                    got = await receive(ws, 10_000)
                    stop.set()
                    pourer.join(20)
                    expected = n.store_events()
                    got += await receive(ws, len(expected) - len(got))
                    assert await quiet(ws) == []
            finally:
                stop.set()
                pourer.join(20)
            assert got == expected

        asyncio.run(main())
        assert n.hub.overflowed >= 1, "the replay never fell behind: the test proves nothing"


def test_with_no_subscriber_the_hub_follows_the_end_of_the_log(store_path: str | Path) -> None:
    with node(store_path) as n:
        n.ingest([outside("test.ping", i) for i in range(50)])
        last = n.store_events()[-1]["seq"]
        wait_until(lambda: n.hub.position == last, what="the hub at the end of the log")
        assert n.hub.stats()["delivered"] == 0  # it read no event to get there

        async def main() -> None:
            async with connect(f"{n.ws}/api/v1/events") as ws:  # live only
                n.ingest([outside("test.ping", 99)])
                (event,) = await receive(ws, 1)
                assert event["data"] == {"n": 99} and event["seq"] == last + 1

        asyncio.run(main())


def test_an_idle_hub_does_not_pass_an_open_transaction(pg_url: str) -> None:
    from test_tail import OpenInsert

    with node(pg_url) as n:
        n.ingest([outside("test.zero", 0)])
        zero = n.store_events()[-1]["seq"]
        wait_until(lambda: n.hub.position == zero, what="the hub at the end of the log")
        held = OpenInsert(pg_url, "test.first")
        try:
            n.ingest([outside("test.second", 2)])
            time.sleep(0.4)  # several idle moves to the end
            assert n.hub.position < held.seq

            async def main() -> None:
                async with connect(f"{n.ws}/api/v1/events?after={zero}") as ws:
                    assert await quiet(ws, 0.3) == []
                    held.commit()
                    first, second = await receive(ws, 2)
                    assert (first["id"], second["type"]) == (held.id, "test.second")
                    assert await quiet(ws, 0.2) == []

            asyncio.run(main())
        finally:
            held.commit()


# -- refusals ------------------------------------------------------------------------------


def test_tokens_viewer_needed_else_1008(sqlite_path: Path) -> None:
    with node(sqlite_path, tokens=True) as n:
        n.ingest([outside("test.ping", 1)], OPERATOR.token)

        async def main() -> None:
            url = f"{n.ws}/api/v1/events"
            code, reason = await closed_with(url)
            assert code == 1008 and "token" in reason
            code, reason = await closed_with(f"{url}?token=wrong")
            assert code == 1008 and "not valid" in reason
            bad = {"additional_headers": {"Authorization": "Bearer wrong"}}
            assert (await closed_with(url, **bad))[0] == 1008
            code, _ = await closed_with(url, additional_headers={"Authorization": "Basic x"})
            assert code == 1008
            for options in (
                {"uri": f"{url}?after=0&token={VIEWER.token}"},
                {
                    "uri": f"{url}?after=0",
                    "additional_headers": {"Authorization": f"Bearer {VIEWER.token}"},
                },
            ):
                async with connect(**options) as ws:
                    (event,) = await receive(ws, 1)
                    assert event["type"] == "test.ping" and event["seq"] >= 1

        asyncio.run(main())


def test_unknown_run_4404_unknown_event_id_and_bad_type_4400(sqlite_path: Path) -> None:
    with node(sqlite_path) as n:
        n.ingest([outside("test.ping", 1, id="known-id")])

        async def main() -> None:
            code, reason = await closed_with(f"{n.ws}/api/v1/runs/no-such-run/events")
            assert (code, reason) == (4404, "no run no-such-run")
            code, reason = await closed_with(f"{n.ws}/api/v1/events?after=no-such-event")
            assert code == 4400 and "no-such-event" in reason
            code, reason = await closed_with(f"{n.ws}/api/v1/events?type=baton.*.x")
            assert code == 4400 and "pattern" in reason
            code, _ = await closed_with(f"{n.ws}/api/v1/events?heartbeat=0")
            assert code == 4400
            async with connect(f"{n.ws}/api/v1/events?after=known-id") as ws:
                assert await quiet(ws, 0.2) == []  # after the only event: nothing to replay
                n.ingest([outside("test.ping", 2)])
                (event,) = await receive(ws, 1)
                assert event["data"] == {"n": 2}

        asyncio.run(main())

        with client(n.url) as http:  # the node serves on after the refusals
            assert http.get("/api/v1/events").status_code == 200


def test_a_broken_handshake_does_not_hurt_the_node(sqlite_path: Path) -> None:
    with node(sqlite_path) as n:
        host, port = n.url.removeprefix("http://").split(":")
        for request in (
            b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",  # no key
            b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n\x81\xff garbage",
        ):
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.sendall(request)
                with contextlib.suppress(OSError):
                    s.recv(4096)

        async def main() -> None:
            async with connect(f"{n.ws}/api/v1/events") as ws:
                n.ingest([outside("test.ping", 1)])
                assert (await receive(ws, 1))[0]["type"] == "test.ping"

        asyncio.run(main())


def test_heartbeat_carries_a_position_to_resume_from(sqlite_path: Path) -> None:
    with node(sqlite_path) as n:
        n.ingest([outside("test.pong", i) for i in range(3)])

        async def main() -> None:
            url = f"{n.ws}/api/v1/events?type=test.ping&heartbeat=1"
            async with connect(url) as ws:
                beat = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert beat["heartbeat"] is True and beat["position"] >= 3
            n.ingest([outside("test.ping", 7)])
            async with connect(f"{url}&after={beat['position']}") as ws:
                (event,) = await receive(ws, 1)
                assert event["data"] == {"n": 7}

        asyncio.run(main())


# -- a slow subscriber ---------------------------------------------------------------------


def small_receive_buffer(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    return sock


def test_a_slow_subscriber_is_cut_without_holding_up_a_fast_one(sqlite_path: Path) -> None:
    with node(sqlite_path, queue_size=2000) as n:  # > one ingest

        async def main() -> None:
            url = f"{n.ws}/api/v1/events?type=test.tick"
            # uncompressed: the node's buffers then fill after ~15,000 events, not ~100,000
            slow = await connect(
                url, sock=small_receive_buffer(n.url), max_queue=1, compression=None
            )
            fast = await connect(url, compression=None)
            got: list[dict[str, Any]] = []
            sent = 0
            loop = asyncio.get_running_loop()
            while n.hub.cut == 0 and sent < 300_000:
                batch = [outside("test.tick", sent + i) for i in range(1000)]
                await loop.run_in_executor(None, n.ingest, batch)
                sent += len(batch)
                got += await receive(fast, sent - len(got))
            assert n.hub.cut == 1, "the slow subscriber was never cut"
            assert [e["data"]["n"] for e in got] == list(range(sent))  # all, in order
            assert n.hub.stats()["subscribers"] == 1
            await fast.close()

            slow_got: list[dict[str, Any]] = []
            with pytest.raises(ConnectionClosed) as caught:
                while True:
                    slow_got.append(json.loads(await asyncio.wait_for(slow.recv(), 20)))
            assert caught.value.rcvd is not None
            assert caught.value.rcvd.code == 1013
            assert "too slow" in caught.value.rcvd.reason
            assert f"after={slow_got[-1]['seq']}" in caught.value.rcvd.reason
            assert [e["data"]["n"] for e in slow_got] == list(range(len(slow_got)))
            assert len(slow_got) < sent

        asyncio.run(main())
