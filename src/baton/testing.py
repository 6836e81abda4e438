"""`baton.testing`: run workflows in tests with time that skips ahead.

A `WorkflowEnvironment` is an App on a throw-away SQLite file with a virtual clock. While a
test waits for a result, and nothing is runnable, the clock jumps straight to the next thing
due (a sleep's end, a retry back-off, an approval or signal timeout, a schedule's firing, a
deadline). A workflow that sleeps 30 days finishes in milliseconds, through the same store,
checkpoints and recovery paths as in production::

    from baton.testing import WorkflowEnvironment

    def test_reminder():
        with WorkflowEnvironment() as env:
            app = env.app

            @app.workflow()
            def remind() -> str:
                baton.sleep(30 * 24 * 3600)
                return "done"

            assert env.run(remind) == "done"
            assert env.elapsed >= 30 * 24 * 3600
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from baton.core.clock import VirtualClock
from baton.core.errors import ResultTimeout
from baton.engine.app import App
from baton.engine.handles import RunHandle, _outcome
from baton.store.records import NEVER, TERMINAL

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z: a fixed, readable start for every test


class WorkflowEnvironment:
    """An App with a time-skipping virtual clock on a temporary SQLite file, or on the store
    given (a path or any store URL).

    `app` takes every App option (concurrency, queues, ...). Use it as a context manager,
    or call `close()`.
    """

    def __init__(
        self,
        store: str | Path | None = None,
        start: float = START,
        settle: float = 0.002,
        **app_options: Any,
    ) -> None:
        self._tmp = None if store is not None else tempfile.mkdtemp(prefix="baton-test-")
        # a given store as is: Path() would fold a URL's "//" and name a SQLite file after it
        path = store if store is not None else Path(self._tmp) / "baton.db"  # type: ignore[arg-type]
        self.clock = VirtualClock(start)
        self.started_at = start
        self._settle = settle
        app_options.setdefault("poll_interval", 0.05)
        self.app = App(path, clock=self.clock, **app_options)

    # -- time ------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.clock.now()

    @property
    def elapsed(self) -> float:
        """Virtual seconds since the environment started."""
        return self.clock.now() - self.started_at

    def sleep(self, seconds: float) -> None:
        """Let `seconds` of virtual time pass, running everything that falls due on the way
        (each sleep's end, retry, timeout and schedule firing, in order)."""
        target = self.clock.now() + seconds
        while True:
            self.wait_idle()
            due = self.next_due()
            if due is None or due > target:
                break
            self.clock.set(max(due, self.clock.now()))
        self.clock.set(target)
        self.wait_idle()

    def next_due(self) -> float | None:
        """When the next thing in the store falls due (None: nothing has a timer)."""
        store = self.app.store
        times = [store.next_due(None)]
        fire = getattr(store, "next_schedule_fire", None)
        if fire is not None:
            times.append(fire())
        due = [t for t in times if t is not None and t < NEVER]
        return min(due) if due else None

    # -- runs ------------------------------------------------------------------------------
    def run(self, workflow: str | Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Start a run and return its result, skipping time while it waits."""
        return self.result(self.app.start(workflow, *args, **kwargs))

    def result(self, handle: RunHandle | str, timeout: float = 30.0) -> Any:
        """The run's output (or its error raised), skipping virtual time whenever nothing is
        runnable. Raises ResultTimeout when the run waits for something with no timer (a
        signal or approval without timeout) or when `timeout` real seconds pass."""
        run_id = handle if isinstance(handle, str) else handle.id
        give_up = time.monotonic() + timeout
        while True:
            self.wait_idle(give_up)
            run = self.app.store.get_run(run_id)
            if run is None:
                raise LookupError(f"no run with id {run_id}")
            if run.status in TERMINAL:
                return _outcome(run)
            due = self.next_due()
            if due is None or time.monotonic() > give_up:
                # nothing will ever wake it on its own: a signal or decision is missing
                raise ResultTimeout(run_id, timeout, run.status)
            self.clock.set(max(due, self.clock.now()))

    def wait_idle(self, give_up: float | None = None) -> None:
        """Block (real time) until no run executes and nothing is due now."""
        give_up = give_up if give_up is not None else time.monotonic() + 30.0
        quiet = 0
        while time.monotonic() < give_up:
            if not self._pending():
                quiet += 1
                if quiet >= 2:  # twice in a row: no wake-up was in flight
                    return
            else:
                quiet = 0
            time.sleep(self._settle)

    def _pending(self) -> bool:
        """Is there work at the current virtual time? Read in the order work moves on (a
        schedule fires a run, the worker claims it, an execution runs it), so that a run moving
        on between two reads is seen by the later one."""
        rt = self.app._ensure_runtime()
        store = self.app.store
        now = self.clock.now()
        fire = getattr(store, "next_schedule_fire", None)
        if rt is not None and fire is not None:
            due = fire()
            if due is not None and due <= now:
                return True  # a slot to fire
        due = store.next_due(None)
        if due is not None and due <= now:
            return True  # a run to claim
        if rt is None:
            return False
        if rt.busy():
            return True  # a run executing, or a slot reserved for one being inserted
        # a run claimed (RUNNING, owned by this worker) but not handed to an execution yet
        return store.owned_runs().get(rt.worker_id, 0) > 0

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self.app.shutdown(timeout=5.0)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> WorkflowEnvironment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
