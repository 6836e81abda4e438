"""Handing work to an event loop from other threads, with one wake-up of the loop per batch.

`asyncio.wrap_future` and `call_soon_threadsafe` wake the loop (a write to its self-pipe)
for every future resolved and every call: a commit resolves the writes of many async runs at
once, and hands new runs over, from the committing thread, on the path of the next commit.
Here the first item of a batch schedules one call on the loop, and the items that come
before it runs join it.

Unlike `wrap_future`, cancelling the awaiting task does not cancel the Future: a store write
handed over is committed (or fails) whoever still waits for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from baton.observability.logging import get_logger

log = get_logger("baton.runtime")

_handoffs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Handoff] = (
    weakref.WeakKeyDictionary()
)
_handoffs_lock = threading.Lock()


def awaitable(fut: Future, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
    """An asyncio future of `loop` (the running one) that takes `fut`'s outcome."""
    waiter = loop.create_future()
    if fut.done():
        _copy(fut, waiter)
        return waiter
    handoff = _handoff(loop)

    def resolved(done: Future) -> None:
        try:
            handoff.add(functools.partial(_copy, done, waiter))
        except RuntimeError:  # the loop closed: nobody waits any more
            pass

    fut.add_done_callback(resolved)
    return waiter


def call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], object]) -> None:
    """`loop.call_soon_threadsafe(fn)`, batched; RuntimeError if the loop is closed."""
    if loop.is_closed():
        raise RuntimeError("Event loop is closed")
    _handoff(loop).add(fn)


def _handoff(loop: asyncio.AbstractEventLoop) -> _Handoff:
    handoff = _handoffs.get(loop)
    if handoff is None:
        with _handoffs_lock:
            handoff = _handoffs.setdefault(loop, _Handoff(loop))
    return handoff


class _Handoff:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self._lock = threading.Lock()
        self._ready: list[Callable[[], object]] = []
        self._scheduled = False

    def add(self, fn: Callable[[], object]) -> None:
        """Have the loop call `fn` soon; RuntimeError if it is closed."""
        with self._lock:
            self._ready.append(fn)
            if self._scheduled:
                return
            self._scheduled = True
        loop = self._loop()
        try:
            if loop is None:
                raise RuntimeError("Event loop is closed")
            # in an empty context: the items are not the scheduling thread's to run
            loop.call_soon_threadsafe(self._drain, context=contextvars.Context())
        except RuntimeError:
            with self._lock:  # nothing will run them: the next caller is told as well
                self._ready.clear()
                self._scheduled = False
            raise

    def _drain(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            self._scheduled = False
        for fn in ready:
            try:
                fn()
            except Exception:  # as the loop does with a failing callback
                log.exception("a call handed to the event loop failed")


def _copy(done: Future, waiter: asyncio.Future[Any]) -> None:
    if waiter.cancelled():
        return
    if done.cancelled():
        waiter.cancel()
        return
    exc = done.exception()
    if exc is None:
        waiter.set_result(done.result())
    else:
        waiter.set_exception(exc)
