"""What the API says about runs, steps, events and the rest: JSON shapes and converters.

Stored JSON (inputs, outputs, errors, event data) is decoded; secret-looking keys are masked;
times are RFC 3339 strings in UTC.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel

from baton.core.events import rfc3339
from baton.core.redact import redact
from baton.engine import liveness
from baton.store.records import (
    NEVER,
    ApprovalRecord,
    EventRecord,
    RunRecord,
    ScheduleRecord,
    StepRecord,
    WorkerRecord,
)


def when(ts: float | None) -> str | None:
    return None if ts is None or ts >= NEVER else instant(ts)


def instant(ts: float) -> str:
    """RFC 3339 in UTC; a time no calendar date can show (year 0, 10000) as its epoch seconds
    rather than failing the answer it is part of."""
    try:
        return rfc3339(ts)
    except (ValueError, OverflowError, OSError):
        return str(ts)


# JSON nested deeper than this is refused on input (422); the renderers (redaction, pydantic,
# json) have recursion limits, so a stored value nested deeper than SHOWN_DEPTH (put there
# through the Python API) is not shown rather than failing the whole answer
ACCEPTED_DEPTH = 100
SHOWN_DEPTH = 200


def depth(value: Any) -> int:
    """How deep lists and dicts nest in `value` (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list | tuple):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item)
    return deepest


def shallow(value: Any) -> Any:
    """A pydantic after-validator for JSON values the API accepts."""
    if depth(value) > ACCEPTED_DEPTH:
        raise ValueError(f"JSON nested deeper than {ACCEPTED_DEPTH} levels is not accepted")
    return value


def storable(text: str) -> str:
    """A pydantic after-validator for text the API accepts: no NUL (PostgreSQL cannot keep
    U+0000 in text, and the two stores keep the same rules), no lone surrogate (not UTF-8)."""
    if "\x00" in text:
        raise ValueError("text may not contain NUL (U+0000)")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (it has a lone surrogate)") from None
    return text


JsonValue = Annotated[Any, AfterValidator(shallow)]
Text = Annotated[str, AfterValidator(storable)]


def decoded(text: str | None) -> Any:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except RecursionError:  # nested past the parser's limit: not shown (nor its secrets)
        value = None
    except ValueError:
        return text
    else:
        if depth(value) <= SHOWN_DEPTH:
            return redact(value)
    return f"(not shown: JSON nested deeper than {SHOWN_DEPTH} levels)"


class Run(BaseModel):
    run_id: str
    workflow: str
    version: str
    status: str
    queue: str
    priority: int
    correlation_id: str
    idempotency_key: str | None = None
    parent_run_id: str | None = None
    forked_from: str | None = None
    schedule: str | None = None
    attempt: int
    owner: str | None = None
    input: Any = None
    output: Any = None
    error: Any = None
    created_at: str | None = None
    updated_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    available_at: str | None = None
    deadline_at: str | None = None
    duration_ms: float | None = None
    traceparent: str | None = None


def run_view(run: RunRecord) -> Run:
    ended = run.finished_at
    return Run(
        run_id=run.run_id,
        workflow=run.workflow,
        version=run.version,
        status=run.status,
        queue=run.queue,
        priority=run.priority,
        correlation_id=run.correlation_id,
        idempotency_key=run.idempotency_key,
        parent_run_id=run.parent_run_id,
        forked_from=run.forked_from,
        schedule=run.schedule,
        attempt=run.attempt,
        owner=run.owner,
        input=decoded(run.input),
        output=decoded(run.output),
        error=decoded(run.error),
        created_at=when(run.created_at),
        updated_at=when(run.updated_at),
        started_at=when(run.started_at),
        finished_at=when(ended),
        available_at=when(run.available_at),
        deadline_at=when(run.deadline_at),
        duration_ms=None if ended is None else round((ended - run.created_at) * 1000, 3),
        traceparent=run.traceparent,
    )


class Step(BaseModel):
    seq: int
    name: str
    kind: str
    status: str
    attempts: int
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: float | None = None
    output: Any = None
    error: Any = None


def step_view(step: StepRecord) -> Step:
    ended = step.finished_at
    return Step(
        seq=step.seq,
        name=step.name,
        kind=step.kind,
        status=step.status,
        attempts=step.attempts,
        started_at=when(step.started_at),
        finished_at=when(ended),
        duration_ms=None if ended is None else round((ended - step.started_at) * 1000, 3),
        output=decoded(step.output),
        error=decoded(step.error),
    )


class Event(BaseModel):
    """A CloudEvent from the log; `seq` is its position (resume streams after it)."""

    seq: int
    specversion: str = "1.0"
    id: str
    type: str
    source: str
    subject: str | None = None
    time: str
    correlationid: str | None = None
    runid: str | None = None
    data: Any = None


def event_view(event: EventRecord) -> Event:
    return Event(
        seq=event.seq,
        id=event.id,
        type=event.type,
        source=event.source,
        subject=event.subject,
        time=instant(event.time),
        correlationid=event.correlation_id,
        runid=event.run_id,
        data=decoded(event.data),
    )


class Approval(BaseModel):
    run_id: str
    seq: int
    name: str
    workflow: str
    correlation_id: str
    assignees: list[str]
    status: str
    requested_at: str | None = None
    deadline_at: str | None = None
    decided_by: str | None = None
    comment: str | None = None
    decided_at: str | None = None


def approval_view(a: ApprovalRecord) -> Approval:
    return Approval(
        run_id=a.run_id,
        seq=a.seq,
        name=a.name,
        workflow=a.workflow,
        correlation_id=a.correlation_id,
        assignees=a.assignees,
        status=a.status,
        requested_at=when(a.requested_at),
        deadline_at=when(a.deadline_at),
        decided_by=a.decided_by,
        comment=a.comment,
        decided_at=when(a.decided_at),
    )


class Schedule(BaseModel):
    name: str
    workflow: str
    version: str
    kind: str
    spec: str
    timezone: str
    queue: str
    priority: int
    overlap: str
    paused: bool
    next_fire_at: str | None = None
    last_fire_at: str | None = None
    input: Any = None


def schedule_view(s: ScheduleRecord) -> Schedule:
    return Schedule(
        name=s.name,
        workflow=s.workflow,
        version=s.version,
        kind=s.kind,
        spec=s.spec,
        timezone=s.timezone,
        queue=s.queue,
        priority=s.priority,
        overlap=s.overlap,
        paused=s.paused,
        next_fire_at=when(s.next_fire_at),
        last_fire_at=when(s.last_fire_at),
        input=decoded(s.input),
    )


class Node(BaseModel):
    id: str
    host: str
    pid: int
    started_at: str | None = None
    heartbeat_at: str | None = None
    heartbeat_age: float
    runs_owned: int
    versions: list[str]
    state: str  # alive or gone


def node_view(w: WorkerRecord, owned: int, now: float, ttl: float) -> Node:
    return Node(
        id=w.worker_id,
        host=w.host,
        pid=w.pid,
        started_at=when(w.started_at),
        heartbeat_at=when(w.heartbeat_at),
        heartbeat_age=round(max(0.0, now - w.heartbeat_at), 3),
        runs_owned=owned,
        versions=list(w.versions),
        state="gone" if liveness.is_gone(w, now, ttl) else "alive",
    )


class Page(BaseModel):
    items: list[Any]
    next_cursor: str | None = None
