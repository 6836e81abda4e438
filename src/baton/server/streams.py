"""WebSocket streams of the event log: `/api/v1/events` and `/api/v1/runs/{run_id}/events`.

Each message is one JSON object, the `Event` view (with `seq` and `id`). A stream first
replays the matching history from the store after `after` (a seq, or an event id; without
it, `/events` sends live events only and a run's stream starts at the run's first), then
goes on with live events from the hub, with no gap and no duplicate where the two meet: it
subscribes to the hub first (its queue takes every event after the hub's position), replays
the store up to that position, then sends what its queue holds past the last seq sent.

Close codes: 1008 no or bad token; 4400 a bad parameter (an unknown event id); 4404 an
unknown run; 1013 a subscriber too slow to keep up (resume with `after=<last seq>`); 1001 the
node is shutting down; 1011 an unexpected failure (logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from baton.core.events import rfc3339
from baton.core.roles import Role
from baton.observability.logging import get_logger
from baton.server.context import Control
from baton.server.hub import EventFilter, EventHub, HubEvent, Subscription
from baton.server.problems import Problem

router = APIRouter(prefix="/api/v1", tags=["events"])
log = get_logger("baton.server.streams")

CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_BAD_REQUEST = 4400
CLOSE_NOT_FOUND = 4404
REPLAY_PAGE = 500  # events per store read while replaying
RESYNC_LIMIT = 20  # times a replay may fall behind the live queue before the stream is cut
FAIR_EVERY = 64  # messages sent before yielding to other streams
CLOSE_WAIT = 30.0  # seconds a close frame may wait behind unsent data to a slow client
HUB_WAIT = 30.0  # seconds a new stream waits for the hub to know its position


class _Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@router.websocket("/events")
async def events_stream(websocket: WebSocket) -> None:
    """Events of the log; query: `type` (repeatable; `baton.run.*` for a prefix), `workflow`,
    `correlation_id`, `run_id`, `after` (seq or event id), `token`, `heartbeat` (seconds)."""
    await _serve(websocket, None)


@router.websocket("/runs/{run_id}/events")
async def run_events_stream(websocket: WebSocket, run_id: str) -> None:
    """Events of one run; query: `after` (seq or event id), `type`, `token`, `heartbeat`."""
    await _serve(websocket, run_id)


async def _serve(ws: WebSocket, run_id: str | None) -> None:
    """Never raises: every failure ends as a close code (or a dropped connection)."""
    try:
        await ws.accept()
    except Exception:  # the client went away during the handshake
        return
    try:
        stream = await _open(ws, run_id)
    except _Refused as refused:
        await _close(ws, refused.code, refused.reason)
        return
    except Exception:
        log.exception("event stream could not open", path=ws.url.path)
        await _close(ws, CLOSE_INTERNAL, "the node logged the cause")
        return
    await stream.run()


async def _open(ws: WebSocket, run_id: str | None) -> _Stream:
    ctl: Control = ws.app.state.control
    query = ws.query_params
    authorization = ws.headers.get("authorization")
    token = query.get("token")
    if not authorization and token:
        authorization = f"Bearer {token}"
    try:
        who = ctl.auth.principal(authorization)
    except Problem as problem:
        raise _Refused(CLOSE_POLICY, problem.detail or problem.title) from None
    if who.role < Role.VIEWER:
        raise _Refused(CLOSE_POLICY, f"this needs the viewer role; {who.name!r} has {who.role}")

    try:
        filt = EventFilter.of(
            query.getlist("type"),
            workflow=None if run_id is not None else query.get("workflow") or None,
            correlation_id=None if run_id is not None else query.get("correlation_id") or None,
            run_id=run_id if run_id is not None else query.get("run_id") or None,
        )
        heartbeat = _seconds(query.get("heartbeat"))
    except ValueError as exc:
        raise _Refused(CLOSE_BAD_REQUEST, str(exc)) from None

    store = ctl.app.store
    if run_id is not None and await run_in_threadpool(store.get_run, run_id) is None:
        raise _Refused(CLOSE_NOT_FOUND, f"no run {run_id}")
    after = await _after(store, query.get("after"))
    if after is None and run_id is not None:
        after = 0  # a run's stream starts with the run's history

    hub = ctl.extras.get("hub")
    if not isinstance(hub, EventHub):
        raise RuntimeError("this API has no event hub (create it with create_api)")
    try:
        await hub.start(HUB_WAIT)  # at once when the lifespan started it
    except TimeoutError:
        raise _Refused(CLOSE_INTERNAL, "the event log cannot be read now; try again") from None
    except RuntimeError:
        raise _Refused(1001, "the node is shutting down") from None
    return _Stream(ws, hub, filt, after, heartbeat)


async def _after(store: Any, given: str | None) -> int | None:
    if given is None or given == "":
        return None
    if given.isascii() and given.isdigit() and len(given) < 19:
        return int(given)
    if len(given) > 200:
        raise _Refused(CLOSE_BAD_REQUEST, "after must be an event seq or an event id")
    seq = await run_in_threadpool(store.event_seq, given)
    if seq is None:
        raise _Refused(CLOSE_BAD_REQUEST, f"after: no event with id {given[:80]}")
    return seq


def _seconds(given: str | None) -> float | None:
    if given is None or given == "":
        return None
    try:
        value = float(given)
    except ValueError:
        raise ValueError("heartbeat must be a number of seconds") from None
    if not 1 <= value <= 3600:
        raise ValueError("heartbeat must be between 1 and 3600 seconds")
    return value


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    reason = reason.encode()[:123].decode(errors="ignore")  # a close frame's limit
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(code, reason), CLOSE_WAIT)


class _Stream:
    """One open stream: replay, then live; `last` is the last seq the client has covered."""

    def __init__(
        self,
        ws: WebSocket,
        hub: EventHub,
        filt: EventFilter,
        after: int | None,
        heartbeat: float | None,
    ) -> None:
        self.ws, self.hub, self.filter = ws, hub, filt
        self.heartbeat = heartbeat
        self.ended = asyncio.Event()  # cut by the hub
        self.close_code: int | None = None
        self.close_reason = ""
        self.sub = self._subscribe()
        self.last = self.sub.start if after is None else after  # no `after`: live events only

    def _subscribe(self) -> Subscription:
        return self.hub.subscribe(self.filter, on_cut=self._on_cut, replaying=True)

    def _on_cut(self, sub: Subscription) -> None:
        if sub is not self.sub:
            return
        self.close_code = sub.cut_code
        self.close_reason = f"{sub.cut_reason}; resume with after={self.last}"
        self.ended.set()

    async def run(self) -> None:
        pump = asyncio.ensure_future(self._pump())
        listen = asyncio.ensure_future(self._listen())
        cut = asyncio.ensure_future(self.ended.wait())
        try:
            done, _ = await asyncio.wait({pump, listen, cut}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, listen, cut):
                task.cancel()
            await asyncio.gather(pump, listen, cut, return_exceptions=True)
            self.hub.unsubscribe(self.sub)
        if listen in done:  # the client went away (or closed): nothing more to send
            return
        if cut in done:
            await _close(self.ws, self.close_code or CLOSE_INTERNAL, self.close_reason)
            return
        failure = pump.exception() if not pump.cancelled() else None
        if failure is None or _disconnected(failure):
            return
        if isinstance(failure, _Refused):
            await _close(self.ws, failure.code, failure.reason)
            return
        log.error("event stream failed", path=self.ws.url.path, exc_info=failure)
        await _close(self.ws, CLOSE_INTERNAL, "the node logged the cause")

    async def _listen(self) -> None:
        """Wait for the client to leave; what it sends is ignored."""
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return

    async def _pump(self) -> None:
        await self._catch_up()
        await self._live()

    async def _catch_up(self) -> None:
        """Replay the store up to the position of the subscription; if its queue overflowed
        meanwhile (a long history), replay on to the hub's new position and subscribe again."""
        for _ in range(RESYNC_LIMIT):
            await self._replay(self.sub.start)
            if not self.sub.overflowed:
                self.sub.replaying = False
                return
            self.sub = self._subscribe()
        raise _Refused(1013, f"events come faster than this stream replays; after={self.last}")

    async def _replay(self, upto: int) -> None:
        while self.last < upto:
            events, covered = await run_in_threadpool(self._page, self.last, upto)
            for event in events:
                await self.ws.send_text(event.text)
                self.last = event.seq
            self.last = max(self.last, covered)

    def _page(self, after: int, upto: int) -> tuple[list[HubEvent], int]:
        """Matching events after `after` up to `upto`, and the seq the page covers."""
        f = self.filter
        found = self.hub.store.list_events(
            f.run_id,
            None,
            f.correlation_id,
            after,
            REPLAY_PAGE,
            workflow=f.workflow,
            types=f.store_types,
        )
        kept = [r for r in found if r.seq <= upto]
        covered = upto if len(kept) < REPLAY_PAGE else kept[-1].seq
        events = [HubEvent(r) for r in kept if f.type_matches(r.type)]
        for event in events:
            event.text  # noqa: B018  (encoded here, off the event loop)
        return events, covered

    async def _live(self) -> None:
        queue, ws = self.sub.queue, self.ws
        sent = 0
        while True:
            if queue.empty():
                if self.heartbeat is None:
                    event = await queue.get()
                else:
                    try:
                        event = await asyncio.wait_for(queue.get(), self.heartbeat)
                    except TimeoutError:
                        await self._beat()
                        continue
            else:
                event = queue.get_nowait()
            if event.seq <= self.last:
                continue
            await ws.send_text(event.text)
            self.last = event.seq
            sent += 1
            if sent % FAIR_EVERY == 0:
                await asyncio.sleep(0)

    async def _beat(self) -> None:
        """With nothing queued, every matching event up to the hub's position was sent: the
        client may resume from there."""
        self.last = max(self.last, self.hub.position)
        beat = {"heartbeat": True, "position": self.last, "time": rfc3339(time.time())}
        await self.ws.send_json(beat)


def _disconnected(exc: BaseException) -> bool:
    """Whether `exc` says the client is gone (a send on a closed or lost WebSocket)."""
    if isinstance(exc, WebSocketDisconnect | OSError):  # uvicorn's ClientDisconnected too
        return True
    return isinstance(exc, RuntimeError) and "close" in str(exc).lower()
