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
from baton.store.webhooks import (
    ClaimedDelivery,
    DeliveryStatus,
    WebhookDelivery,
    WebhookSubscription,
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
        alive_at: float | None = None,
    ) -> Future[list[RunRecord]]:
        """Take up to `limit` due ENQUEUED runs of the `served` (workflow, version) pairs,
        highest priority first, then oldest; each claim bumps the run's fence.

        With `alive_at` (wall-clock time), the claim also heartbeats `worker_id`'s row, in
        the same transaction, and takes nothing when that row is gone: a worker declared
        dead rejoins before it claims, and a claim is never made by a worker that a
        concurrent sweep is about to declare dead (see `requeue_orphans`).

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

    def queue_depths(self) -> dict[str, int]:
        """How many runs are ENQUEUED in each queue that has any (due now or later)."""
        ...

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
        self, dead_workers: Sequence[WorkerRecord], now: float, source: str
    ) -> Future[list[RunRecord]]:
        """Remove the rows of `dead_workers` (as read when judged gone: a row whose
        heartbeat has moved since stays), then re-enqueue RUNNING runs owned by no
        registered worker."""
        ...

    # feature flags -----------------------------------------------------------------------
    def set_flag(
        self,
        name: str,
        value_json: str,
        now: float,
        by: str | None = None,
        source: str = "baton",
    ) -> Future[str | None]:
        """Store flag `name` (JSON text) and append a `baton.flag.changed` event, in one
        transaction. Resolves to the previous JSON text, or None if there was none."""
        ...

    def delete_flag(
        self,
        name: str,
        now: float | None = None,
        by: str | None = None,
        source: str = "baton",
    ) -> Future[bool]:
        """Remove flag `name`'s stored value (with a `baton.flag.changed` event); resolves to
        whether there was one."""
        ...

    def list_flags(self) -> dict[str, str]:
        """Every stored flag: name -> JSON text."""
        ...

    def get_flag(self, name: str) -> str | None: ...

    # events ------------------------------------------------------------------------------
    def append_events(self, events: Sequence[CloudEvent]) -> Future[None]:
        """Append `events` to the event log in one transaction (events outside any run)."""
        ...

    # analytics ----------------------------------------------------------------------------
    def finished_runs(
        self, since: float, until: float, workflow: str | None = None, limit: int = 200_000
    ) -> list[tuple]:
        """(workflow, status, created_at, started_at, finished_at) of runs ended in the window."""
        ...

    def finished_steps(
        self, since: float, until: float, workflow: str | None = None, limit: int = 500_000
    ) -> list[tuple]:
        """(workflow, step, kind, status, attempts, started_at, finished_at) of their steps."""
        ...

    def event_horizon(self) -> object:
        """A mark of the transactions now open, for `event_settled` (see store/tail.py)."""
        ...

    def event_settled(self, horizon: object) -> bool:
        """Whether every transaction open at `horizon` has ended, so a gap in the events'
        seq seen before it is for good."""
        ...

    def ingest_events(self, events: Sequence[CloudEvent]) -> Future[int]:
        """Append outside events in one transaction, skipping ids already logged; resolves to
        the number appended."""
        ...

    def list_events(
        self,
        run_id: str | None = None,
        type: str | None = None,
        correlation_id: str | None = None,
        after: int = 0,
        limit: int = 100,
        workflow: str | None = None,
        types: Sequence[str] | None = None,
    ) -> list[EventRecord]:
        """Events after position `after`, oldest first; `workflow` keeps those of its runs,
        `types` those of any of the given types."""
        ...

    def event_seq(self, event_id: str) -> int | None:
        """The seq of the logged event with this CloudEvent id, or None."""
        ...

    def last_event_seq(self) -> int:
        """The highest seq in the event log (0 when empty)."""
        ...

    # outbound webhooks (store/webhooks.py, store/sql/webhooks.py) ------------------------------
    def create_webhook(self, subscription: WebhookSubscription) -> Future[WebhookSubscription]:
        """Insert a subscription; it receives the events logged from now on."""
        ...

    def list_webhooks(self) -> list[WebhookSubscription]: ...

    def get_webhook(self, subscription_id: str) -> WebhookSubscription | None: ...

    def update_webhook(
        self,
        subscription_id: str,
        now: float,
        *,
        active: bool | None = None,
        event_types: Sequence[str] | None = None,
        url: str | None = None,
        description: str | None = ...,
    ) -> Future[WebhookSubscription | None]:
        """Change the fields given; None when there is no such subscription."""
        ...

    def delete_webhook(self, subscription_id: str) -> Future[bool]:
        """Remove a subscription and its deliveries; whether it existed."""
        ...

    def get_cursor(self, name: str) -> int | None:
        """The seq stored in the named event-log cursor, or None."""
        ...

    def fan_out_webhooks(
        self, cursor: str, after: int, upto: int, events: Sequence[EventRecord], now: float
    ) -> Future[int | None]:
        """In one transaction: move `cursor` from `after` to `upto` (compare-and-swap) and
        insert each matching (subscription, event) delivery once. None: the cursor had moved."""
        ...

    def claim_webhook_deliveries(
        self,
        owner: str,
        limit: int,
        now: float,
        lease: float,
        per_subscription: int | None = None,
        busy: Mapping[str, int] | None = None,
    ) -> Future[list[ClaimedDelivery]]:
        """Lease due deliveries of active subscriptions, counting an attempt on each; at most
        `per_subscription` (less those `busy` says the caller holds) of any one."""
        ...

    def next_webhook_due(self) -> float | None:
        """When the earliest PENDING delivery is due, or None when there is none."""
        ...

    def settle_webhook_delivery(
        self,
        delivery_id: str,
        owner: str,
        attempts: int,
        now: float,
        status: DeliveryStatus,
        *,
        retry_at: float | None = None,
        last_status: int | None = None,
        last_error: str | None = None,
    ) -> Future[bool]:
        """An attempt's outcome, written only while the claim is still `owner`'s."""
        ...

    def list_webhook_deliveries(
        self,
        subscription_id: str | None = None,
        status: Sequence[str] | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[WebhookDelivery]: ...

    def get_webhook_delivery(self, delivery_id: str) -> WebhookDelivery | None: ...

    def redeliver_webhook(
        self, delivery_id: str, now: float
    ) -> Future[tuple[WebhookDelivery | None, bool]]:
        """A FAILED or DELIVERED delivery PENDING again with attempts 0; (delivery, changed)."""
        ...
