"""The threads sync runs execute in: a run handed over takes an idle thread, or a new one up
to the worker's concurrency.

What `ThreadPoolExecutor` does per task (a Future, a work item, a Condition-based semaphore
on both sides) is paid on the path of every start, between commits; nothing waits on a run's
thread for its outcome (it is in the store), so this keeps only the queue and a count of idle
threads.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from baton.observability.logging import get_logger

log = get_logger("baton.runtime")

_STOP = None


class RunThreads:
    def __init__(self, limit: int, name: str) -> None:
        self._limit = limit
        self._name = name
        self._queue: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a run, less the runs handed to them already
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, fn: Callable[[], object]) -> None:
        """Run `fn` in a thread of its own; RuntimeError once shut down."""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot start runs after shutdown")
            self._queue.put(fn)
            if self._idle > 0:  # that thread takes it (or another idle one)
                self._idle -= 1
                return
            if len(self._threads) >= self._limit:  # the next thread to finish takes it
                return
            thread = threading.Thread(
                target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
        thread.start()

    def shutdown(self, wait: bool = True) -> None:
        """Start nothing more: runs not taken yet are dropped (they stay claimed, for
        recovery); with `wait`, wait for the runs under way."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        for _ in threads:
            self._queue.put(_STOP)
        if wait:
            for thread in threads:
                thread.join()

    def _work(self) -> None:
        get = self._queue.get
        while True:
            fn = get()
            if fn is _STOP:
                return
            try:
                fn()
            except Exception:  # a run reports its own failures: this is a defect
                log.exception("a run's thread failed")
            del fn
            with self._lock:
                self._idle += 1
