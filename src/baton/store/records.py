"""The rows the store keeps, as plain dataclasses shared by every backend."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from operator import attrgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from baton.core.events import CloudEvent


class RunStatus(StrEnum):
    ENQUEUED = "ENQUEUED"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    COMPENSATING = "COMPENSATING"
    COMPENSATED = "COMPENSATED"
    DEAD = "DEAD"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
        RunStatus.COMPENSATED,
        RunStatus.DEAD,
    }
)
REDRIVABLE = frozenset({RunStatus.DEAD, RunStatus.FAILED})


# available_at of a run that waits with no timer (year 9999): far, finite, sortable
NEVER = 253402300799.0


class StepStatus(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    WAITING = "WAITING"  # a sleep, signal, approval or child the run is suspended on
    RETRYING = "RETRYING"  # an attempt failed; the next one is scheduled
    FAILED = "FAILED"  # failed for good (non-retryable, or retries exhausted)


@dataclass(slots=True)
class RunRecord:
    run_id: str
    workflow: str
    version: str
    status: str
    queue: str
    priority: int
    available_at: float
    correlation_id: str
    input: str
    created_at: float
    updated_at: float
    owner: str | None = None
    fence: int = 0
    lease_expires_at: float | None = None
    attempt: int = 0
    deadline_at: float | None = None
    timeout: float | None = None
    parent_run_id: str | None = None
    idempotency_key: str | None = None
    output: str | None = None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    wakeups: int = 0  # bumped by anything that should wake a WAITING run (signal, child done)
    concurrency_key: str | None = None  # at most key_limit runs with this key run at once
    key_limit: int | None = None
    debounce_key: str | None = None
    schedule: str | None = None  # the schedule whose firing started this run
    forked_from: str | None = None
    traceparent: str | None = None  # W3C trace context: a resumed run joins its trace


RUN_COLUMNS = tuple(RunRecord.__slots__)  # type: ignore[attr-defined]
# a run's values in RUN_COLUMNS order (attrgetter: one C call on the hot path)
run_values: attrgetter[tuple] = attrgetter(*RUN_COLUMNS)


@dataclass(slots=True)
class StepRecord:
    run_id: str
    seq: int
    name: str
    args_hash: str
    status: str
    attempts: int
    started_at: float
    finished_at: float | None = None
    output: str | None = None
    error: str | None = None
    written_by: str | None = None
    kind: str = "step"  # step, sleep, signal, approval, child, patch, compensation
    input: str | None = None  # the call's arguments, kept for steps that declare compensate=


STEP_COLUMNS = tuple(StepRecord.__slots__)  # type: ignore[attr-defined]
step_values: attrgetter[tuple] = attrgetter(*STEP_COLUMNS)


@dataclass(slots=True)
class WorkerRecord:
    worker_id: str
    host: str
    pid: int
    process_started_at: float
    started_at: float
    heartbeat_at: float
    versions: list[str] = field(default_factory=list)


@dataclass(slots=True)
class EventRecord:
    seq: int
    id: str
    type: str
    source: str
    subject: str | None
    time: float
    correlation_id: str | None
    run_id: str | None
    data: str | None


@dataclass(slots=True)
class ScheduleRecord:
    """A stored schedule: its spec (cron or interval), the run it starts, and its progress."""

    name: str
    workflow: str
    version: str
    kind: str  # "cron" or "every"
    spec: str  # the cron expression, or the interval in seconds
    timezone: str
    input: str  # the workflow input of every run it starts (serialized args and kwargs)
    queue: str
    priority: int
    overlap: str  # "skip", "buffer_one" or "allow_all"
    catchup: float  # missed slots at most this old still fire after an outage (seconds)
    paused: bool
    next_fire_at: float | None  # the first slot not fired yet (UTC epoch seconds)
    last_fire_at: float | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: tuple) -> ScheduleRecord:
        record = cls(*row)
        record.paused = bool(record.paused)
        return record


SCHEDULE_COLUMNS = tuple(ScheduleRecord.__slots__)  # type: ignore[attr-defined]
# a change to any of these rewrites a stored schedule; the rest is its state
SCHEDULE_SPEC = (
    "workflow",
    "version",
    "kind",
    "spec",
    "timezone",
    "input",
    "queue",
    "priority",
    "overlap",
    "catchup",
)


@dataclass(slots=True)
class ScheduleFiring:
    """What one pass over a due schedule writes, in one transaction with its next_fire_at."""

    runs: list[tuple[RunRecord, list[CloudEvent]]]  # each run with the events of its creation
    events: list[CloudEvent]  # about the schedule itself (slots skipped)
    next_fire_at: float | None
    last_fire_at: float | None


@dataclass(slots=True)
class SignalRecord:
    seq: int
    id: str
    run_id: str
    name: str
    payload: str | None
    sent_at: float
    consumed_seq: int | None = None
    consumed_at: float | None = None


@dataclass(slots=True)
class ApprovalRecord:
    """A human decision a run waits for; PENDING until APPROVED, REJECTED or TIMED_OUT."""

    run_id: str
    seq: int
    name: str
    workflow: str
    correlation_id: str
    assignees: list[str]
    requested_at: float
    deadline_at: float | None
    on_timeout: dict[str, Any]
    status: str = "PENDING"
    decided_by: str | None = None
    comment: str | None = None
    decided_at: float | None = None

    @classmethod
    def from_row(cls, row: tuple) -> ApprovalRecord:
        values = list(row)
        values[5] = json.loads(values[5])
        values[8] = json.loads(values[8])
        return cls(*values)

    def decision(self) -> dict[str, Any]:
        return {
            "approved": self.status == "APPROVED",
            "status": self.status,
            "by": self.decided_by,
            "comment": self.comment,
            "at": self.decided_at,
            "timed_out": self.status == "TIMED_OUT",
        }
