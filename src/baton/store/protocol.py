"""The Store protocol: every durable fact passes through these calls.

Writes return a `concurrent.futures.Future` that resolves only after the change is committed,
so sync callers block on `.result()` and async callers await `asyncio.wrap_future(...)`.
Writes that act for a run's owner carry its `fence` and raise `FenceLost` when it is stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import Protocol

from baton.core.events import CloudEvent
from baton.store.flow import Queue
from baton.store.records import (
    EventRecord,
    RunRecord,
    ScheduleFiring,
    ScheduleRecord,
    StepRecord,
    WorkerRecord,
)


class Store(Protocol):
    location: str

    def close(self) -> None: ...

    # runs -----------------------------------------------------------------------------
    def create_run(
        self, run: RunRecord, events: Sequence[CloudEvent]
    ) -> Future[tuple[RunRecord, bool]]:
        """Insert `run`, or return the existing run with its idempotency key (created=False).

        A run that comes already claimed (`owner` set) is inserted unclaimed, without its
        `baton.run.started` event, when its queue has a concurrency or rate limit: the
        returned record says which.
        """
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
        highest priority first, then oldest; each claim bumps the run's fence.

        Queue limits and concurrency keys are enforced in the same transaction (see
        `baton.store.flow`); the list may be a `Claimed` whose `retry_at` says when runs that
        a rate limit held back may be admitted."""
        ...

    def debounce_run(
        self, run: RunRecord, events: Sequence[CloudEvent], source: str
    ) -> Future[tuple[RunRecord, bool]]:
        """Insert `run` (with a `debounce_key`), or give its input, `available_at` and deadline
        to the ENQUEUED, never-started run of the same workflow and version with that key
        and return that one (created=False), in one transaction."""
        ...

    # queues ----------------------------------------------------------------------------
    def define_queue(self, queue: Queue, now: float) -> Future[Queue]:
        """Create or replace a queue's limits, for every process on the store."""
        ...

    def get_queue(self, name: str) -> Queue | None: ...

    def list_queues(self) -> list[Queue]: ...

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

    def fork_run(
        self, run: RunRecord, from_step: int, events: Sequence[CloudEvent]
    ) -> Future[RunRecord]:
        """Insert `run`, a fork of run `run.forked_from`, with a copy of that run's SUCCEEDED
        checkpoints numbered below `from_step`. RunNotFound for an unknown source;
        StepNotFound unless 1 <= from_step <= its highest recorded step + 1."""
        ...

    def expire_deadlines(self, now: float, error: str, source: str) -> Future[list[RunRecord]]:
        """End every unfinished run whose deadline has passed, as FAILED with `error`."""
        ...

    # sagas -------------------------------------------------------------------------------
    def fail_run(
        self,
        run_id: str,
        fence: int,
        status: str,
        error: str,
        now: float,
        events: Mapping[str, Sequence[CloudEvent]],
        step: StepRecord | None = None,
    ) -> Future[str]:
        """End a run that failed for good as `status` (FAILED or DEAD) with events["ended"],
        or, when it has completed steps with compensations, turn it COMPENSATING (error kept,
        fence bumped, deadline dropped, claimable now) with events["compensating"]. `step` is
        written either way. Returns the new status."""
        ...

    def cancel_or_compensate(
        self, run_id: str, now: float, error: str, events: Mapping[str, Sequence[CloudEvent]]
    ) -> Future[RunRecord]:
        """Cancel a run (events["cancelled"]), or turn it COMPENSATING with `error` when it has
        completed steps with compensations (events["compensating"]); both bump the fence and
        cancel its unfinished children. InvalidState if it ended or is COMPENSATING."""
        ...

    def redrive_compensation(
        self, run_id: str, now: float, events: Sequence[CloudEvent]
    ) -> Future[RunRecord | None]:
        """Turn a DEAD run whose compensation failed COMPENSATING again (its original error
        back, failed compensation attempts forgotten); None, changing nothing, for others."""
        ...

    # steps -------------------------------------------------------------------------------
    def load_steps(self, run_id: str) -> list[StepRecord]: ...

    # schedules ---------------------------------------------------------------------------
    def save_schedule(self, schedule: ScheduleRecord) -> Future[tuple[ScheduleRecord, str]]:
        """Insert or update a declared schedule: ("created" | "updated" | "unchanged").
        An update keeps `paused`, and `next_fire_at` unless kind, spec or time zone changed."""
        ...

    def get_schedule(self, name: str) -> ScheduleRecord | None: ...

    def list_schedules(self) -> list[ScheduleRecord]: ...

    def pause_schedule(
        self, name: str, now: float, events: Sequence[CloudEvent]
    ) -> Future[ScheduleRecord]:
        """ScheduleNotFound for an unknown name; `events` are written only on a change."""
        ...

    def resume_schedule(
        self,
        name: str,
        now: float,
        next_fire_at: Callable[[ScheduleRecord], float | None],
        events: Sequence[CloudEvent],
    ) -> Future[ScheduleRecord]:
        """Unpause, firing from `next_fire_at(row)` on (slots passed while paused never fire)."""
        ...

    def next_schedule_fire(self) -> float | None:
        """The earliest `next_fire_at` among schedules that are not paused, or None."""
        ...

    def due_schedules(self, now: float) -> list[ScheduleRecord]:
        """Schedules not paused whose `next_fire_at` is at or before `now`."""
        ...

    def fire_schedule(
        self,
        name: str,
        now: float,
        plan: Callable[[ScheduleRecord, int, int], ScheduleFiring | None],
    ) -> Future[list[RunRecord]]:
        """In one transaction: if `name` is due, call `plan(row, unfinished runs, runs not
        started)` and insert its runs (at most once each, by idempotency key), its events and
        its `next_fire_at`. Returns the runs created."""
        ...

    def create_schedule_runs(
        self, runs: Sequence[tuple[RunRecord, list[CloudEvent]]]
    ) -> Future[list[tuple[RunRecord, bool]]]:
        """Insert runs in one transaction; existing idempotency keys return the stored run."""
        ...

    # child runs --------------------------------------------------------------------------
    def start_children(
        self, fence: int, children: Sequence[tuple[StepRecord, RunRecord, Sequence[CloudEvent]]]
    ) -> Future[list[str]]:
        """Insert each (parent checkpoint, child run, events) in one transaction fenced on the
        parent; a child whose idempotency key exists is not inserted again. Returns the
        children's run ids."""
        ...

    def await_children(
        self,
        run_id: str,
        fence: int,
        seen_wakeups: int,
        waiting: Sequence[StepRecord],
        children: Sequence[str],
        hold: bool,
        wake_at: float,
        now: float,
        describe: Callable[[RunRecord], str],
        events: Sequence[CloudEvent],
    ) -> Future[list[StepRecord | None]]:
        """Record in checkpoint `waiting[i]` how child `children[i]` ended (None if it has
        not); suspend run `run_id` until `wake_at` if one has not ended or `hold` is set."""
        ...

    def list_children(self, run_id: str) -> list[RunRecord]: ...

    # workers -----------------------------------------------------------------------------
    def register_worker(self, worker: WorkerRecord) -> Future[None]: ...

    def heartbeat(self, worker_id: str, now: float) -> Future[bool]:
        """Refresh this worker's heartbeat; False if its row was removed as dead."""
        ...

    def list_workers(self) -> list[WorkerRecord]: ...

    def owned_runs(self) -> dict[str, int]:
        """How many runs each worker holds (running or compensating), by worker id."""
        ...

    def remove_worker(self, worker_id: str) -> Future[None]: ...

    def requeue_orphans(
        self, dead_workers: Sequence[str], now: float, source: str
    ) -> Future[list[RunRecord]]:
        """Re-enqueue RUNNING runs owned by `dead_workers` or by no registered worker."""
        ...

    # events ------------------------------------------------------------------------------
    def append_events(self, events: Sequence[CloudEvent]) -> Future[None]:
        """Append `events` to the event log in one transaction (events outside any run)."""
        ...

    def list_events(
        self,
        run_id: str | None = None,
        type: str | None = None,
        correlation_id: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[EventRecord]: ...
