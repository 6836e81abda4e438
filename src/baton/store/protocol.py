"""The Store protocol: every durable fact passes through these calls.

Writes return a `concurrent.futures.Future` that resolves only after the change is committed,
so sync callers block on `.result()` and async callers await `asyncio.wrap_future(...)`.
Writes that act for a run's owner carry its `fence` and raise `FenceLost` when it is stale.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from typing import Protocol

from baton.core.events import CloudEvent
from baton.store.records import EventRecord, RunRecord, StepRecord, WorkerRecord


class Store(Protocol):
    location: str

    def close(self) -> None: ...

    # runs -----------------------------------------------------------------------------
    def create_run(
        self, run: RunRecord, events: Sequence[CloudEvent]
    ) -> Future[tuple[RunRecord, bool]]:
        """Insert `run`, or return the existing run with its idempotency key (created=False)."""
        ...

    def claim_runs(
        self,
        worker_id: str,
        queues: Sequence[str] | None,
        limit: int,
        now: float,
        lease: float,
        source: str,
        served: Sequence[tuple[str, str]] | None = None,
    ) -> Future[list[RunRecord]]:
        """Take up to `limit` due ENQUEUED runs of the `served` (workflow, version) pairs,
        highest priority first, then oldest; each claim bumps the run's fence."""
        ...

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def list_runs(
        self,
        status: Iterable[str] | None = None,
        workflow: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[RunRecord]: ...

    def count_runs(self, status: Iterable[str] | None = None) -> dict[str, int]: ...

    def next_due(
        self, queues: Sequence[str] | None, served: Sequence[tuple[str, str]] | None = None
    ) -> float | None:
        """The earliest `available_at` among ENQUEUED runs, or None."""
        ...

    # owner-side transitions (fenced) ----------------------------------------------------
    def save_step(
        self, fence: int, step: StepRecord, events: Sequence[CloudEvent]
    ) -> Future[None]: ...

    def retry_step_later(
        self, fence: int, step: StepRecord, available_at: float, events: Sequence[CloudEvent]
    ) -> Future[None]:
        """Record a failed attempt and hand the run back to the queue until `available_at`."""
        ...

    def finish_run(
        self,
        run_id: str,
        fence: int,
        status: str,
        output: str | None,
        error: str | None,
        now: float,
        events: Sequence[CloudEvent],
        step: StepRecord | None = None,
    ) -> Future[None]: ...

    def release_run(
        self, run_id: str, fence: int, now: float, events: Sequence[CloudEvent]
    ) -> Future[None]:
        """Give a RUNNING run back to the queue (graceful shutdown)."""
        ...

    # operator-side transitions -----------------------------------------------------------
    def cancel_run(
        self, run_id: str, now: float, events: Sequence[CloudEvent]
    ) -> Future[RunRecord]: ...

    def redrive_run(
        self, run_id: str, now: float, events: Sequence[CloudEvent]
    ) -> Future[RunRecord]:
        """Put a DEAD or FAILED run back in its queue; its failed step runs again."""
        ...

    def expire_deadlines(self, now: float, error: str, source: str) -> Future[list[RunRecord]]:
        """End every unfinished run whose deadline has passed, as FAILED with `error`."""
        ...

    # steps -------------------------------------------------------------------------------
    def load_steps(self, run_id: str) -> list[StepRecord]: ...

    # workers -----------------------------------------------------------------------------
    def register_worker(self, worker: WorkerRecord) -> Future[None]: ...

    def heartbeat(self, worker_id: str, now: float) -> Future[bool]:
        """Refresh this worker's heartbeat; False if its row was removed as dead."""
        ...

    def list_workers(self) -> list[WorkerRecord]: ...

    def remove_worker(self, worker_id: str) -> Future[None]: ...

    def requeue_orphans(
        self, dead_workers: Sequence[str], now: float, source: str
    ) -> Future[list[RunRecord]]:
        """Re-enqueue RUNNING runs owned by `dead_workers` or by no registered worker."""
        ...

    # events ------------------------------------------------------------------------------
    def list_events(
        self,
        run_id: str | None = None,
        type: str | None = None,
        correlation_id: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[EventRecord]: ...
