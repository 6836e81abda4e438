"""Agent events: a bounded in-memory history, callbacks, and the store's event log.

The supervisor emits; a dispatcher thread calls the callbacks in emission order, so a slow
callback never delays supervision. History is written synchronously, so anything read after
an emit sees it.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from baton.core.events import CloudEvent, rfc3339
from baton.observability.logging import get_logger

log = get_logger("baton.agents")


class EventType(StrEnum):
    AGENT_REGISTERED = "baton.agent.registered"
    AGENT_STARTED = "baton.agent.started"
    AGENT_READY = "baton.agent.ready"
    AGENT_HEARTBEAT = "baton.agent.heartbeat"
    AGENT_ERROR = "baton.agent.error"
    AGENT_STUCK = "baton.agent.stuck"
    AGENT_RESTARTED = "baton.agent.restarted"
    AGENT_TERMINATED = "baton.agent.terminated"
    ALL_AGENTS_TERMINATED = "baton.agents.all_terminated"


@dataclass(frozen=True, slots=True)
class AgentEvent:
    seq: int  # 1, 2, 3 ... in emission order, per orchestrator
    type: EventType
    agent: str | None
    time: float
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The short name: AGENT_STARTED, ..."""
        return self.type.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "type": self.type.name,
            "agent": self.agent,
            "time": rfc3339(self.time),
            "data": self.data,
        }

    def to_cloudevent(self, source: str) -> CloudEvent:
        return CloudEvent(
            type=self.type.value, source=source, subject=self.agent, data=self.data, time=self.time
        )


@dataclass(frozen=True, slots=True)
class AgentMessage:
    """Something an agent sent with `self.send(...)`."""

    agent: str
    body: Any
    time: float
    generation: int


Callback = Callable[[AgentEvent], None]


class Subscription:
    def __init__(self, manager: EventManager, entry: _Entry) -> None:
        self._manager = manager
        self._entry = entry

    def cancel(self) -> None:
        self._manager._remove(self._entry)


@dataclass(slots=True)
class _Entry:
    callback: Callable[[Any], None]
    types: frozenset[EventType] | None
    agent: str | None
    messages: bool = False


_STOP = object()


class EventManager:
    """Events in, history and callbacks out. `sink` gets batches of CloudEvents (the store)."""

    def __init__(
        self,
        history_size: int,
        source: str,
        sink: Callable[[list[CloudEvent]], Any] | None = None,
    ) -> None:
        self._source = source
        self._sink = sink
        self._history: deque[AgentEvent] = deque(maxlen=history_size)
        self._seq = itertools.count(1)
        self._changed = threading.Condition()
        self._entries: list[_Entry] = []
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pending_sink: list[Any] = []

    # -- emitting -------------------------------------------------------------------------
    def emit(self, kind: EventType, agent: str | None = None, /, **data: Any) -> AgentEvent:
        with self._changed:
            event = AgentEvent(next(self._seq), kind, agent, time.time(), data)
            self._history.append(event)
            self._changed.notify_all()
        self._outbox.put(event)
        return event

    def deliver(self, message: AgentMessage) -> None:
        """Hand an agent's message to the message callbacks, in order with the events."""
        self._outbox.put(message)

    # -- reading --------------------------------------------------------------------------
    def history(
        self,
        agent: str | None = None,
        types: Iterable[EventType] | None = None,
        limit: int | None = None,
    ) -> list[AgentEvent]:
        wanted = frozenset(types) if types is not None else None
        with self._changed:
            events = [
                e
                for e in self._history
                if (agent is None or e.agent == agent) and (wanted is None or e.type in wanted)
            ]
        return events[-limit:] if limit else events

    def wait_for(
        self,
        type: EventType,
        agent: str | None = None,
        timeout: float | None = None,
        after: int = 0,
        where: Callable[[AgentEvent], bool] | None = None,
    ) -> AgentEvent | None:
        """The first event of `type` (for `agent`) with seq > `after`, waiting up to `timeout`
        for it; None if none came. Only events still in the history are found."""

        def found() -> AgentEvent | None:
            for e in self._history:
                if (
                    e.seq > after
                    and e.type == type
                    and (agent is None or e.agent == agent)
                    and (where is None or where(e))
                ):
                    return e
            return None

        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while (event := found()) is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._changed.wait(left)
            return event

    @property
    def last_seq(self) -> int:
        with self._changed:
            return self._history[-1].seq if self._history else 0

    # -- callbacks ------------------------------------------------------------------------
    def subscribe(
        self,
        callback: Callback,
        types: Iterable[EventType] | EventType | None = None,
        agent: str | None = None,
    ) -> Subscription:
        """Call `callback(event)` for every later event (of `types`, for `agent`), on the
        dispatcher thread, in emission order. A callback that raises is logged and kept."""
        if isinstance(types, EventType):
            types = [types]
        entry = _Entry(callback, frozenset(types) if types is not None else None, agent)
        with self._changed:
            self._entries = [*self._entries, entry]
        return Subscription(self, entry)

    def subscribe_messages(self, callback: Callable[[AgentMessage], None]) -> Subscription:
        entry = _Entry(callback, None, None, messages=True)
        with self._changed:
            self._entries = [*self._entries, entry]
        return Subscription(self, entry)

    def _remove(self, entry: _Entry) -> None:
        with self._changed:
            self._entries = [e for e in self._entries if e is not entry]

    # -- the dispatcher -------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._dispatch, name="baton-agents-events", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what was emitted, then stop the dispatcher and wait for the store."""
        if self._thread is None:
            return
        self._outbox.put(_STOP)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None
        for future in self._pending_sink:
            with contextlib.suppress(Exception):  # failures were logged when they happened
                future.result(timeout)
        self._pending_sink = []

    def _dispatch(self) -> None:
        while True:
            batch = [self._outbox.get()]
            while True:  # take what is already there: one store write per burst
                try:
                    batch.append(self._outbox.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            items = [item for item in batch if item is not _STOP]
            self._to_sink([i for i in items if isinstance(i, AgentEvent)])
            for item in items:
                self._call(item)
            if stop:
                return

    def _to_sink(self, events: list[AgentEvent]) -> None:
        if self._sink is None or not events:
            return
        try:
            written = self._sink([e.to_cloudevent(self._source) for e in events])
        except Exception as exc:  # the event log is a copy: never let it stop supervision
            log.warning("agent events not written to the store", error=repr(exc))
            return
        if written is not None:
            self._pending_sink = [f for f in self._pending_sink if not f.done()]
            self._pending_sink.append(written)
            written.add_done_callback(_log_sink_failure)

    def _call(self, item: AgentEvent | AgentMessage) -> None:
        is_message = isinstance(item, AgentMessage)
        for entry in self._entries:
            if entry.messages != is_message:
                continue
            if not is_message:
                if entry.types is not None and item.type not in entry.types:
                    continue
                if entry.agent is not None and entry.agent != item.agent:
                    continue
            try:
                entry.callback(item)
            except Exception as exc:
                log.warning(
                    "agent event callback raised", callback=repr(entry.callback), error=repr(exc)
                )


def _log_sink_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("agent events not written to the store", error=repr(future.exception()))
