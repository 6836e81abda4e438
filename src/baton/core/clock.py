"""Clocks: wall time for production, a virtual clock that tests move by hand."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch; every stored timestamp comes from here."""
        ...

    async def sleep_until(self, when: float, wake: asyncio.Event | None = None) -> None:
        """Return at `when` (clock time), or earlier once `wake` is set."""
        ...


class RealClock:
    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when: float, wake: asyncio.Event | None = None) -> None:
        delay = when - self.now()
        if delay <= 0:
            return
        if wake is None:
            await asyncio.sleep(delay)
            return
        try:
            await asyncio.wait_for(wake.wait(), delay)
        except TimeoutError:
            pass


class VirtualClock:
    """Time that moves only when `advance()` or `set()` is called.

    Waiters on any event loop are woken when their deadline is reached.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._waiters: list[tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._order = itertools.count()
        self._abandoned = 0  # waiters woken early whose entries still sit in the heap

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        return self.set(self._now + seconds)

    def set(self, when: float) -> float:
        with self._lock:
            self._now = max(self._now, when)
            due = []
            while self._waiters and self._waiters[0][0] <= self._now:
                due.append(heapq.heappop(self._waiters))
        for _, _, loop, fut in due:
            if fut.done() or loop.is_closed():
                continue  # the sleeper gave up, or its loop is gone
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:  # closed between the check and the call
                pass
        return self._now

    async def sleep_until(self, when: float, wake: asyncio.Event | None = None) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        with self._lock:
            if when <= self._now:
                return
            heapq.heappush(self._waiters, (when, next(self._order), loop, fut))
        if wake is None:
            await fut
            return
        waker = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({fut, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waker.cancel()
            if not fut.done():
                fut.cancel()
                self._forget_abandoned()

    def _forget_abandoned(self) -> None:
        """Drop the entries of waiters woken early once they are most of the heap: a worker
        woken again and again while time stands still would otherwise keep one per wake-up."""
        with self._lock:
            self._abandoned += 1
            if self._abandoned < 64 or self._abandoned * 2 < len(self._waiters):
                return
            self._waiters = [w for w in self._waiters if not w[3].done()]
            heapq.heapify(self._waiters)
            self._abandoned = 0


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)
