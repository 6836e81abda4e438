"""RunHandle: what `app.start` returns."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from baton.core import serialization
from baton.core.errors import ResultTimeout, RunCancelled, RunFailed, RunNotFound
from baton.store.records import TERMINAL, RunRecord, RunStatus

if TYPE_CHECKING:
    from baton.engine.app import App
    from baton.engine.execution import Execution


class RunHandle:
    """A run by id. Cheap to make; every call reads the store."""

    def __init__(
        self, app: App, run_id: str, created: bool = True, record: RunRecord | None = None
    ) -> None:
        self.app = app
        self.id = run_id
        self.created = created  # False when an idempotency key matched an existing run
        self.record = record  # the run as its start stored (or found) it, when known
        self.execution: Execution | None = None  # its execution, left for `App.run` to drive

    def __repr__(self) -> str:
        return f"RunHandle({self.id!r})"

    def info(self) -> RunRecord:
        run = self.app.store.get_run(self.id)
        if run is None:
            raise RunNotFound(self.id)
        return run

    def status(self) -> str:
        return self.info().status

    def cancel(self) -> RunRecord:
        return self.app.cancel(self.id)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the run to end and return its output.

        Raises RunFailed (FAILED, DEAD, COMPENSATED), RunCancelled, or ResultTimeout; and
        BlockingOnWorkerLoop on the worker's event loop (in an async workflow or step).
        """
        self.app._refuse_on_worker_loop("handle.result()")
        deadline = None if timeout is None else time.monotonic() + timeout
        signal = self.app._waiter(self.id)
        pause = 0.002
        try:
            while True:
                run = self.info()
                if run.status in TERMINAL:
                    return _outcome(run)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise ResultTimeout(self.id, timeout or 0.0, run.status)
                # woken at once by a local finish; polls for runs finished by other processes
                signal.wait(pause if left is None else min(pause, left))
                signal.clear()
                pause = min(pause * 2, 0.1)
        finally:
            self.app._unwait(self.id, signal)


def _outcome(run: RunRecord) -> Any:
    if run.status == RunStatus.SUCCEEDED:
        return serialization.loads(run.output)
    if run.status == RunStatus.CANCELLED:
        raise RunCancelled(run.run_id)
    raise RunFailed(run.run_id, run.status, serialization.loads(run.error))
