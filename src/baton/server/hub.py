"""One reader per API process tails the event log and fans each event out to subscribers.

The reader is a thread: it polls the log with an `EventTail` (every `poll_interval` when
idle, at once again after a full read, and at once when hinted: after an ingest here, or on
PostgreSQL's NOTIFY) and hands each batch to the event loop, which puts each event into the
bounded queue of every subscriber whose filter matches. While nobody subscribes it reads no
events: every `IDLE_JUMP` seconds it moves its position to the log's settled end. An event is
encoded (the `Event` view as JSON) once, when a first subscriber wants it, and shared by all.
A subscriber whose queue is full is cut (its stream closes, saying so) rather than holding up
the others or growing without bound.

`position` is the seq of the last event handed out. Everything at or below it is final (the
tail never passes a gap that may still fill), so a stream replays history from the store up
to the position it saw when it subscribed, and takes the rest from its queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from baton.observability.logging import get_logger
from baton.server.views import event_view
from baton.store.protocol import Store
from baton.store.records import EventRecord
from baton.store.tail import EventTail

log = get_logger("baton.server.hub")

POLL_INTERVAL = 0.02  # seconds between reads of an idle log
READ_BATCH = 1000  # events per read; a full read is followed by another at once
QUEUE_SIZE = 10_000  # events a subscriber may have waiting before it is cut
WORKFLOW_CACHE = 10_000  # run id -> workflow, for run events whose data does not say
IDLE_JUMP = 0.1  # seconds between moves to the log's end while nobody subscribes
CLOSE_TOO_SLOW = 1013  # "try again later": the client resumes with after=<last seq>
CLOSE_GOING_AWAY = 1001


_UNSET: Any = object()


class HubEvent:
    """An event as streams need it: what filters look at, and its JSON text (the `Event`
    view), made on first use and shared by every subscriber (none: never made)."""

    __slots__ = ("_text", "_workflow", "correlation_id", "record", "run_id", "seq", "type")

    def __init__(self, record: EventRecord) -> None:
        self.record = record
        self.seq, self.type = record.seq, record.type
        self.run_id, self.correlation_id = record.run_id, record.correlation_id
        self._text: str | None = None
        self._workflow: Any = _UNSET if record.run_id is not None else None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = event_view(self.record).model_dump_json()
        return self._text

    @property
    def workflow(self) -> str | None:
        """The workflow of its run: the `workflow` its data names (run events carry it); an
        event outside any run has none."""
        if self._workflow is _UNSET:
            self._workflow = _named_workflow(self.record.data)
        return self._workflow

    def resolve_workflow(self, workflow_of: Callable[[str], str | None]) -> None:
        """Look the run up when the data does not name its workflow (not on the loop)."""
        if self.run_id is not None and self.workflow is None:
            self._workflow = workflow_of(self.run_id)


def _named_workflow(data: str | None) -> str | None:
    if not data or '"workflow"' not in data:
        return None
    try:
        decoded = json.loads(data)
    except ValueError:
        return None
    found = decoded.get("workflow") if isinstance(decoded, dict) else None
    return found if isinstance(found, str) else None


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a subscriber wants; empty fields match everything.

    `types` are exact types or prefixes written `baton.run.*` (`*` alone: every type).
    `workflow` keeps events of runs of that workflow (never events outside a run, as the
    store's query does); `correlation_id` and `run_id` compare with the event's."""

    exact: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    workflow: str | None = None
    correlation_id: str | None = None
    run_id: str | None = None

    @classmethod
    def of(
        cls,
        types: Iterable[str] = (),
        workflow: str | None = None,
        correlation_id: str | None = None,
        run_id: str | None = None,
    ) -> EventFilter:
        exact: set[str] = set()
        prefixes: list[str] = []
        every = False
        for pattern in types:
            if not pattern or len(pattern) > 200:
                raise ValueError("an event type pattern must have 1 to 200 characters")
            if pattern == "*":
                every = True
            elif pattern.endswith(".*") and "*" not in pattern[:-2]:
                prefixes.append(pattern[:-1])  # "baton.run.*" -> "baton.run."
            elif "*" in pattern:
                raise ValueError(
                    f"bad event type pattern {pattern!r}: a '*' may only end one, after a '.' "
                    "(baton.run.*), or stand alone"
                )
            else:
                exact.add(pattern)
        if every:
            exact, prefixes = set(), []
        return cls(frozenset(exact), tuple(prefixes), workflow, correlation_id, run_id)

    @property
    def store_types(self) -> list[str] | None:
        """Types for the store's query (exact ones only; None: filter by type here)."""
        return sorted(self.exact) if self.exact and not self.prefixes else None

    def type_matches(self, type: str) -> bool:
        if not self.exact and not self.prefixes:
            return True
        return type in self.exact or type.startswith(self.prefixes)

    def matches(self, event: HubEvent) -> bool:
        return (
            (self.run_id is None or event.run_id == self.run_id)
            and (self.correlation_id is None or event.correlation_id == self.correlation_id)
            and (self.workflow is None or event.workflow == self.workflow)
            and self.type_matches(event.type)
        )


@dataclass(eq=False)
class Subscription:
    """A subscriber's bounded queue of matching events, in seq order.

    `start` is the hub's position when it subscribed: every later event that matches comes
    through the queue. While `replaying`, a full queue only marks it `overflowed` (the
    stream reads on from the store and subscribes again); once live, a full queue cuts it."""

    filter: EventFilter
    queue: asyncio.Queue[HubEvent]
    start: int
    on_cut: Callable[[Subscription], None] | None = None
    replaying: bool = False
    overflowed: bool = False
    cut_code: int | None = None
    cut_reason: str | None = None
    active: bool = field(default=True)


class EventHub:
    """The event log's one reader in this process, and its subscribers."""

    def __init__(
        self,
        store: Store,
        *,
        poll_interval: float = POLL_INTERVAL,
        batch: int = READ_BATCH,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.batch = batch
        self.queue_size = queue_size
        self._position = 0
        self._subs: list[Subscription] = []
        self._by_workflow = 0  # subscribers with a workflow filter
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready: asyncio.Event | None = None
        self._wake = threading.Event()
        self._stopping = False
        self._unsubscribe: Callable[[], None] | None = None
        self._workflows: OrderedDict[str, str | None] = OrderedDict()
        self.delivered = 0  # events handed out
        self.cut = 0  # subscribers cut for being too slow
        self.overflowed = 0  # replaying subscribers that fell behind (they subscribe again)

    # -- lifecycle (on the event loop) --------------------------------------------------
    def launch(self) -> None:
        """Start the reader (once), from the event loop it hands events to."""
        if self._thread is not None:
            return
        if self._stopping:
            raise RuntimeError("this event hub has been stopped")
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="baton-event-hub", daemon=True)
        self._thread.start()
        subscribe = getattr(self.store, "subscribe", None)
        if subscribe is not None:  # PostgreSQL: another process made work ready
            self._unsubscribe = subscribe(self.hint)

    async def start(self, timeout: float | None = None) -> None:
        """Start the reader if need be; returns once `position` is known (it waits for the
        store to answer). Raises TimeoutError after `timeout` seconds."""
        self.launch()
        assert self._ready is not None
        async with asyncio.timeout(timeout):
            await self._ready.wait()
        if self._stopping:
            raise RuntimeError("this event hub has been stopped")

    async def stop(self) -> None:
        """Stop the reader; every subscriber is cut (the node is going away)."""
        self._stopping = True
        self._wake.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for sub in list(self._subs):
            self._cut(sub, CLOSE_GOING_AWAY, "the node is shutting down")
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            await asyncio.to_thread(thread.join, 5)

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopping

    @property
    def position(self) -> int:
        """The seq of the last event handed out (every event at or below it is final)."""
        return self._position

    def hint(self) -> None:
        """Read the log now rather than at the next poll (thread-safe; a hint only)."""
        self._wake.set()

    def stats(self) -> dict[str, int]:
        return {
            "position": self._position,
            "subscribers": len(self._subs),
            "delivered": self.delivered,
            "cut": self.cut,
            "overflowed": self.overflowed,
        }

    # -- subscribers (on the event loop) ------------------------------------------------
    def subscribe(
        self,
        filter: EventFilter,
        *,
        on_cut: Callable[[Subscription], None] | None = None,
        replaying: bool = False,
        queue_size: int | None = None,
    ) -> Subscription:
        """A queue of the matching events after `position` (read it as `.start`)."""
        if self._stopping:
            raise RuntimeError("this event hub has been stopped")
        sub = Subscription(
            filter, asyncio.Queue(queue_size or self.queue_size), self._position, on_cut, replaying
        )
        self._subs.append(sub)
        self._by_workflow += filter.workflow is not None
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.active = False
        with contextlib.suppress(ValueError):
            self._subs.remove(sub)
            self._by_workflow -= sub.filter.workflow is not None

    def _cut(self, sub: Subscription, code: int, reason: str) -> None:
        self.unsubscribe(sub)
        sub.cut_code, sub.cut_reason = code, reason
        if sub.on_cut is not None:
            try:
                sub.on_cut(sub)
            except Exception:
                log.exception("event stream cut callback failed")

    def _overflow(self, sub: Subscription) -> None:
        if sub.replaying:  # it reads on from the store, then subscribes again
            self.overflowed += 1
            self.unsubscribe(sub)
            sub.overflowed = True
            sub.queue = asyncio.Queue(1)  # let the buffered events go
            return
        self.cut += 1
        self._cut(
            sub,
            CLOSE_TOO_SLOW,
            f"subscriber too slow: {sub.queue.maxsize} events waiting to be sent",
        )

    def _dispatch(self, events: list[HubEvent]) -> None:
        subs = tuple(self._subs)  # none subscribes meanwhile; a cut one turns inactive
        if subs:
            for event in events:
                for sub in subs:
                    if sub.active and sub.filter.matches(event):
                        try:
                            sub.queue.put_nowait(event)
                        except asyncio.QueueFull:
                            self._overflow(sub)
        self._position = events[-1].seq
        self.delivered += len(events)

    # -- the reader (its own thread) ----------------------------------------------------
    def _run(self) -> None:
        try:
            start = self._start_position()
            self._call(lambda: self._begin(start))
            self._follow(start)
        except Exception as exc:
            if not isinstance(exc, _Stopped):
                log.error("the event hub's reader failed", exc_info=exc)
            ready, loop = self._ready, self._loop
            if ready is not None and loop is not None:  # nobody waits for a start forever
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(ready.set)

    def _follow(self, start: int) -> None:
        tail = EventTail(self.store, start)
        failures = 0
        next_jump = 0.0
        while not self._stopping:
            self._wake.clear()  # a hint from here on makes the wait below return at once
            try:
                if not self._subs:
                    # nobody listens: keep up with the log's end without reading its events
                    now = time.monotonic()
                    if now >= next_jump:
                        next_jump = now + IDLE_JUMP
                        end = self._settled_end()
                        if end > tail.position and self._call(lambda end=end: self._jump(end)):
                            tail = EventTail(self.store, end)
                    self._wake.wait(self.poll_interval)
                    continue
                records = tail.read(self.batch)
                failures = 0
            except _Stopped:
                raise
            except Exception as exc:
                if self._stopping:
                    raise _Stopped from None
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("event hub cannot read the event log", error=str(exc))
                self._pause(min(5.0, self.poll_interval * 2**failures))
                continue
            if records:
                events = [HubEvent(r) for r in records]
                if self._by_workflow:  # some subscriber filters by workflow: know each one's
                    for event in events:
                        event.resolve_workflow(self._workflow_of)
                self._call(lambda events=events: self._dispatch(events))
                if len(records) >= self.batch:
                    continue
            self._wake.wait(self.poll_interval)
        raise _Stopped

    def _jump(self, end: int) -> bool:
        """On the loop: move to `end` past events nobody wanted, unless one subscribed since
        (it waits for the events after the position it saw)."""
        if self._subs:
            return False
        self._position = end
        return True

    def _start_position(self) -> int:
        while True:
            try:
                return self._settled_end()
            except _Stopped:
                raise
            except Exception:
                if self._stopping:
                    raise _Stopped from None
                log.warning("event hub waits for the store", exc_info=True)
                self._pause(1.0)

    def _settled_end(self) -> int:
        """The end of the log, once every event at or below it is final: on PostgreSQL a
        lower seq may belong to a transaction still open, so wait for those to end."""
        last = self.store.last_event_seq()
        horizon = self.store.event_horizon()
        while horizon is not None and not self.store.event_settled(horizon):
            if self._stopping:
                raise _Stopped
            self._pause(self.poll_interval)
        return last

    def _pause(self, seconds: float) -> None:
        """Sleep until `seconds` pass or a hint (or stop) comes."""
        self._wake.wait(seconds)
        self._wake.clear()

    def _begin(self, start: int) -> None:
        self._position = start
        assert self._ready is not None
        self._ready.set()

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the event loop, wait until it ran (one batch in flight at most), and
        return what it returned; `_Stopped` when the hub stops or the loop is gone."""
        done = threading.Event()
        result: list[Any] = []

        def run() -> None:
            try:
                result.append(fn())
            finally:
                done.set()

        loop = self._loop
        assert loop is not None
        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop is closed
            raise _Stopped from None
        while not done.wait(0.5):
            if self._stopping or loop.is_closed():
                raise _Stopped
        if not result:  # fn raised (logged by the loop)
            raise RuntimeError("an event hub callback failed")
        return result[0]

    def _workflow_of(self, run_id: str) -> str | None:
        cache = self._workflows
        if run_id in cache:
            cache.move_to_end(run_id)
            return cache[run_id]
        try:
            run = self.store.get_run(run_id)
        except Exception:
            return None
        workflow = None if run is None else run.workflow
        cache[run_id] = workflow
        if len(cache) > WORKFLOW_CACHE:
            cache.popitem(last=False)
        return workflow


class _Stopped(Exception):
    """The hub stops (or its loop is gone): the reader ends."""


@contextlib.asynccontextmanager
async def lifespan(api: Any) -> AsyncIterator[None]:
    """The FastAPI lifespan: start the hub at `control.extras["hub"]`, stop it at the end."""
    hub = api.state.control.extras.get("hub")
    if hub is not None:
        hub.launch()  # streams wait until it is ready; the node need not
    try:
        yield
    finally:
        if hub is not None:
            await hub.stop()
