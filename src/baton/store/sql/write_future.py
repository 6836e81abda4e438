"""A `concurrent.futures.Future` for store writes that waits on a lock of its own.

The base class builds a `threading.Condition` for every future and goes through it (in
Python) on every state change and every wait; a write's future is made, resolved and waited
for several times per workflow, by threads that contend for the GIL. This one keeps its state
under a plain lock and lets waiters block on a second lock (`_gate`) that stays held until the
future is done: resolving it is one release, waiting one acquire. The Condition the base class
needs for `concurrent.futures.wait` and `as_completed` is made only when they ask for it.
"""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError, Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    LOGGER,
    PENDING,
    RUNNING,
)
from typing import Any

_allocate = threading.Lock
_ENDED = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)


class WriteFuture(Future):
    """Behaves as `concurrent.futures.Future` (asyncio.wrap_future, wait and as_completed
    included); cheaper to make, resolve and wait for."""

    def __init__(self) -> None:  # the base's __init__ would build the Condition
        self._state = PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._done_callbacks: list[Any] = []
        self._waiters: list[Any] = []  # concurrent.futures.wait's, through _condition
        self._cond: threading.Condition | None = None
        self._lock = _allocate()
        self._gate = _allocate()
        self._gate.acquire()  # released once, when the future is done

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        """The base class's Condition, for `wait` and `as_completed` only: made on demand,
        under the lock, so that a resolver sees it (and notifies) or the waiter sees the
        future done."""
        with self._lock:
            if self._cond is None:
                self._cond = threading.Condition()
            return self._cond

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {id(self):#x} state={self._state}>"

    # -- reading -------------------------------------------------------------------------
    def cancelled(self) -> bool:
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def running(self) -> bool:
        return self._state == RUNNING

    def done(self) -> bool:
        return self._state in _ENDED

    def result(self, timeout: float | None = None) -> Any:
        self._wait(timeout)
        if self._state != FINISHED:
            raise CancelledError()
        if self._exception is not None:
            try:
                raise self._exception
            finally:
                self = None  # type: ignore[assignment]  # no cycle through the traceback
        return self._result

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        if self._state != FINISHED:
            raise CancelledError()
        return self._exception

    def _wait(self, timeout: float | None) -> None:
        if self._state in _ENDED:
            return
        gate = self._gate
        if not gate.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            raise FutureTimeout()
        gate.release()  # for the next waiter

    # -- changing ------------------------------------------------------------------------
    def add_done_callback(self, fn: Any) -> None:
        with self._lock:
            if self._state not in _ENDED:
                self._done_callbacks.append(fn)
                return
        try:
            fn(self)
        except Exception:
            LOGGER.exception("exception calling callback for %r", self)

    def cancel(self) -> bool:
        with self._lock:
            if self._state in (RUNNING, FINISHED):
                return False
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return True
            self._state = CANCELLED
            cond = self._cond
        self._ended(cond)
        return True

    def set_running_or_notify_cancel(self) -> bool:
        with self._lock:
            if self._state == CANCELLED:
                self._state = CANCELLED_AND_NOTIFIED
                cond = self._cond
            elif self._state == PENDING:
                self._state = RUNNING
                return True
            else:
                raise RuntimeError(f"Future in unexpected state: {self._state}")
        if cond is not None:
            with cond:
                for waiter in self._waiters:
                    waiter.add_cancelled(self)
        return False

    def set_result(self, result: Any) -> None:
        self._finish(result, None)

    def set_exception(self, exception: BaseException | None) -> None:
        self._finish(None, exception)

    def _finish(self, result: Any, exception: BaseException | None) -> None:
        with self._lock:
            if self._state in _ENDED:
                raise InvalidStateError(f"{self._state}: {self!r}")
            self._result, self._exception = result, exception
            self._state = FINISHED
            cond = self._cond
        self._ended(cond)

    def _ended(self, cond: threading.Condition | None) -> None:
        """Done (or cancelled): open the gate, tell `wait`'s waiters, run the callbacks."""
        self._gate.release()
        if cond is not None:
            with cond:  # a cancelled one is reported by set_running_or_notify_cancel
                if self._state == FINISHED:
                    for waiter in self._waiters:
                        if self._exception is None:
                            waiter.add_result(self)
                        else:
                            waiter.add_exception(self)
                cond.notify_all()
        self._invoke_callbacks()
