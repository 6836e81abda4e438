"""Schedules at work: declarations published to the store, due slots fired by the worker, and
the operator's calls (pause, resume, trigger, backfill).

Firing a slot is one store transaction: the run (whose idempotency key names the schedule and
the slot) and the schedule's next `next_fire_at` commit together, so any number of processes
and restarts start one run per slot. The slot maths is in `baton.engine.schedules`.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from baton.core import events as ev
from baton.core import serialization
from baton.core.errors import ScheduleError, ScheduleNotFound
from baton.core.events import CloudEvent, run_event
from baton.core.ids import new_id
from baton.engine.handles import RunHandle
from baton.engine.registry import Registry
from baton.engine.schedules import (
    Skipped,
    Timing,
    admit,
    check_catchup,
    check_overlap,
    plan_pass,
    slot_iso,
    slot_key,
    zone,
)
from baton.observability.logging import get_logger
from baton.store.protocol import Store
from baton.store.records import (
    SCHEDULE_SPEC,
    RunRecord,
    RunStatus,
    ScheduleFiring,
    ScheduleRecord,
)

if TYPE_CHECKING:
    from baton.engine.app import App

log = get_logger("baton.schedules")

MAX_BACKFILL = 10_000  # slots one backfill may start; a longer range is refused, unwritten


@dataclass(frozen=True, slots=True)
class Schedule:
    """A validated declaration (`app.schedule(...)`); stored when the app's worker launches."""

    name: str
    workflow: str
    version: str
    timing: Timing
    input: str
    queue: str
    priority: int
    overlap: str
    catchup: float

    def record(self, now: float) -> ScheduleRecord:
        """The row to store, firing from the first slot after `now` on."""
        return ScheduleRecord(
            name=self.name,
            workflow=self.workflow,
            version=self.version,
            kind=self.timing.kind,
            spec=self.timing.spec,
            timezone=self.timing.timezone,
            input=self.input,
            queue=self.queue,
            priority=self.priority,
            overlap=self.overlap,
            catchup=self.catchup,
            paused=False,
            next_fire_at=self.timing.next_after(now),
            last_fire_at=None,
            created_at=now,
            updated_at=now,
        )


def declare(
    name: str,
    workflow: str,
    version: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    cron: str | None,
    every: float | None,
    timezone: str,
    overlap: str,
    catchup: float,
    queue: str,
    priority: int,
    now: float,
) -> Schedule:
    """Check every part of a declaration; ScheduleError names the schedule and the problem."""
    if not isinstance(name, str) or not name.strip():
        raise ScheduleError(str(name), "a schedule needs a non-empty name")
    timing = Timing.parse(name, cron, every, timezone, now)
    if not isinstance(queue, str) or not queue:
        raise ScheduleError(name, f"queue= takes a non-empty name, got {queue!r}")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ScheduleError(name, f"priority= takes an int, got {priority!r}")
    payload = serialization.dumps(
        {"args": list(args), "kwargs": kwargs}, f"input of schedule {name!r}"
    )
    return Schedule(
        name,
        workflow,
        version,
        timing,
        payload,
        queue,
        priority,
        check_overlap(name, overlap),
        check_catchup(name, catchup),
    )


# -- records and events ------------------------------------------------------------------------
def scheduled_run(
    schedule: ScheduleRecord,
    key: str,
    now: float,
    source: str,
    timeout: float | None,
    fired: dict[str, Any],
) -> tuple[RunRecord, list[CloudEvent]]:
    """A run of `schedule` with its creation events (enqueued, and baton.schedule.fired)."""
    run_id = new_id()
    buffered = schedule.overlap == "buffer_one"
    run = RunRecord(
        run_id=run_id,
        workflow=schedule.workflow,
        version=schedule.version,
        status=RunStatus.ENQUEUED,
        queue=schedule.queue,
        priority=schedule.priority,
        available_at=now,
        correlation_id=run_id,
        input=schedule.input,
        created_at=now,
        updated_at=now,
        idempotency_key=key,
        timeout=timeout,
        deadline_at=None if timeout is None else now + timeout,
        schedule=schedule.name,
        # buffer_one: the waiting run starts only once the one before it has ended
        concurrency_key=f"schedule:{schedule.name}" if buffered else None,
        key_limit=1 if buffered else None,
    )
    enqueued = {"queue": run.queue, "priority": run.priority, "schedule": schedule.name}
    return run, [
        run_event(ev.RUN_ENQUEUED, source, run, now, enqueued),
        schedule_event(ev.SCHEDULE_FIRED, source, schedule.name, now, fired, run),
    ]


def schedule_event(
    type: str,
    source: str,
    name: str,
    now: float,
    data: dict[str, Any],
    run: RunRecord | None = None,
) -> CloudEvent:
    return CloudEvent(
        type=type,
        source=source,
        subject=name,
        time=now,
        data={"schedule": name, **data, **({"run_id": run.run_id} if run else {})},
        runid=run.run_id if run else None,
        correlationid=run.correlation_id if run else None,
    )


def skipped_event(source: str, name: str, now: float, skipped: Skipped) -> CloudEvent:
    data = {
        "reason": skipped.reason,
        "count": skipped.count,
        "exact": skipped.exact,
        "slots": [slot_iso(s) for s in skipped.sample],
    }
    return schedule_event(ev.SCHEDULE_SKIPPED, source, name, now, data)


# -- the worker's side ---------------------------------------------------------------------------
class Scheduler:
    """Fires due schedules for one worker's dispatcher (any worker fires any schedule)."""

    def __init__(self, store: Store, registry: Registry, source: str, retry_after: float) -> None:
        self.store = store
        self.registry = registry
        self.source = source
        self.retry_after = max(retry_after, 0.001)
        self._blocked: dict[str, float] = {}  # a schedule that failed to fire, until when
        # (when read, next fire time): the dispatcher looks on every wake-up, the store
        # changes rarely; another process's change is seen within `retry_after`
        self._known: tuple[float, float | None] | None = None

    def forget(self) -> None:
        """Schedules changed here: read the next fire time again on the next pass."""
        self._known = None

    async def fire_due(self, now: float) -> float | None:
        """Fire every schedule due at `now`; return when the next one is due (None: never).

        A schedule that cannot be fired (a time zone this host lacks, a store error) is
        logged and tried again `retry_after` later; it never stops the worker.
        """
        try:
            return await self._fire_due(now)
        except Exception as exc:  # a read failed: the store is busy or gone for a moment
            log.error("schedules could not be read", error=str(exc))
            return now + self.retry_after

    async def _fire_due(self, now: float) -> float | None:
        known = self._known
        fresh = known is not None and now < known[0] + self.retry_after
        if fresh and (known[1] is None or known[1] > now):  # type: ignore[index]
            return known[1]  # type: ignore[index]
        due_at = self.store.next_schedule_fire()
        if due_at is None or due_at > now:
            self._known = (now, due_at)
            return due_at
        self._known = None
        for schedule in self.store.due_schedules(now):
            if self._blocked.get(schedule.name, -math.inf) > now:
                continue
            try:
                plan = self._plan(schedule, now)
                runs = await asyncio.wrap_future(self.store.fire_schedule(schedule.name, now, plan))
            except Exception as exc:
                log.error("schedule failed to fire", schedule=schedule.name, error=str(exc))
                self._blocked[schedule.name] = now + self.retry_after
                continue
            self._blocked.pop(schedule.name, None)
            if runs:
                log.info("schedule fired", schedule=schedule.name, runs=[r.run_id for r in runs])
        due_at = self.store.next_schedule_fire()
        if due_at is not None and due_at <= now:
            waiting = [s.name for s in self.store.due_schedules(now)]
            if all(self._blocked.get(name, -math.inf) > now for name in waiting):
                # only schedules that failed are due: look again when the first may retry
                due_at = min((self._blocked[n] for n in waiting), default=now + self.retry_after)
        return due_at

    def _plan(
        self, schedule: ScheduleRecord, now: float
    ) -> Callable[[ScheduleRecord, int, int], ScheduleFiring | None]:
        """The slot maths, done here; the returned plan runs in the store's transaction and
        applies only the overlap policy, which needs the schedule's runs as they are then."""
        assert schedule.next_fire_at is not None
        step = plan_pass(
            Timing.of(schedule), schedule.next_fire_at, now, schedule.catchup, schedule.overlap
        )
        wf = self.registry.find(schedule.workflow, schedule.version)
        timeout = wf.timeout if wf is not None else None
        source = self.source

        def plan(row: ScheduleRecord, unfinished: int, waiting: int) -> ScheduleFiring | None:
            changed = any(getattr(row, c) != getattr(schedule, c) for c in SCHEDULE_SPEC)
            if changed or row.next_fire_at != schedule.next_fire_at:
                return None  # planned from an older row: the next pass plans again
            skipped = list(step.skipped)
            fire = step.candidates
            if fire and not admit(row.overlap, unfinished, waiting):
                skipped.append(Skipped("overlap", len(fire), fire))
                fire = ()
            runs = [
                scheduled_run(
                    row,
                    slot_key(row.name, slot),
                    now,
                    source,
                    timeout,
                    {"slot": slot_iso(slot), "trigger": "schedule"},
                )
                for slot in fire
            ]
            return ScheduleFiring(
                runs=runs,
                events=[skipped_event(source, row.name, now, s) for s in skipped],
                next_fire_at=step.next_fire_at,
                last_fire_at=fire[-1] if fire else None,
            )

        return plan


# -- the App's side ----------------------------------------------------------------------------
class Schedules:
    """An App's schedule declarations and the calls that act on stored schedules."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._declared: dict[str, Schedule] = {}
        self._published: dict[str, Schedule] = {}
        self._lock = threading.Lock()

    def declare(self, schedule: Schedule) -> None:
        with self._lock:
            if schedule.name in self._declared:
                raise ScheduleError(
                    schedule.name, "a schedule with this name is already declared in this app"
                )
            self._declared[schedule.name] = schedule

    def publish(self) -> None:
        """Store the declarations not stored yet (an unchanged one keeps its state)."""
        with self._lock:
            pending = [s for n, s in self._declared.items() if self._published.get(n) is not s]
        if not pending:
            return
        now = self.app.clock.now()
        futures = [(s, self.app.store.save_schedule(s.record(now))) for s in pending]
        for schedule, future in futures:
            stored, outcome = future.result()
            with self._lock:
                self._published[schedule.name] = schedule
            if outcome != "unchanged":
                log.info(
                    f"schedule {outcome}",
                    schedule=schedule.name,
                    timing=schedule.timing.describe(),
                    next_fire_at=stored.next_fire_at,
                )

    def list(self) -> list[ScheduleRecord]:
        self.publish()
        return self.app.store.list_schedules()

    def get(self, name: str) -> ScheduleRecord:
        self.publish()
        schedule = self.app.store.get_schedule(name)
        if schedule is None:
            raise ScheduleNotFound(name)
        return schedule

    def pause(self, name: str) -> ScheduleRecord:
        self.publish()
        now = self.app.clock.now()
        event = schedule_event(ev.SCHEDULE_PAUSED, self.app.source, name, now, {})
        return self.app.store.pause_schedule(name, now, [event]).result()

    def resume(self, name: str) -> ScheduleRecord:
        self.publish()
        now = self.app.clock.now()

        def next_fire_at(row: ScheduleRecord) -> float | None:
            return Timing.of(row).next_after(now)  # the slots passed while paused do not fire

        event = schedule_event(ev.SCHEDULE_RESUMED, self.app.source, name, now, {})
        return self.app.store.resume_schedule(name, now, next_fire_at, [event]).result()

    def trigger(self, name: str) -> tuple[RunRecord, bool]:
        """Start one run of the stored schedule now, whatever its slots and overlap policy."""
        schedule = self.get(name)
        now = self.app.clock.now()
        key = f"schedule:{name}:trigger:{new_id()}"
        run, events = scheduled_run(
            schedule, key, now, self.app.source, self._timeout(schedule), {"trigger": "manual"}
        )
        return self.app.store.create_run(run, events).result()

    def backfill(
        self, name: str, start: datetime | float, end: datetime | float
    ) -> list[tuple[RunRecord, bool]]:
        """Start a run for every slot in [start, end] that has none yet, in one transaction."""
        schedule = self.get(name)
        tz = zone(name, schedule.timezone)
        lo, hi = _instant(name, "start", start, tz), _instant(name, "end", end, tz)
        if lo > hi:
            raise ScheduleError(
                name, f"backfill start {slot_iso(lo)} is after its end {slot_iso(hi)}"
            )
        slots = Timing.of(schedule).between(lo, hi, MAX_BACKFILL + 1)
        if len(slots) > MAX_BACKFILL:
            raise ScheduleError(
                name, f"backfill of more than {MAX_BACKFILL} slots; split the range"
            )
        now = self.app.clock.now()
        timeout = self._timeout(schedule)
        runs = [
            scheduled_run(
                schedule,
                slot_key(name, slot),
                now,
                self.app.source,
                timeout,
                {"slot": slot_iso(slot), "trigger": "backfill"},
            )
            for slot in slots
        ]
        return self.app.store.create_schedule_runs(runs).result() if runs else []

    def _timeout(self, schedule: ScheduleRecord) -> float | None:
        wf = self.app.registry.find(schedule.workflow, schedule.version)
        return wf.timeout if wf is not None else None


def _instant(name: str, which: str, value: object, tz: Any) -> float:
    """A backfill bound as epoch seconds; a naive datetime is wall time in the schedule's zone."""
    if isinstance(value, datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=tz)).timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ScheduleError(name, f"backfill {which} takes a datetime or epoch seconds, got {value!r}")


def run_handles(app: App, pairs: list[tuple[RunRecord, bool]]) -> list[RunHandle]:
    return [RunHandle(app, run.run_id, created) for run, created in pairs]
