"""The event log over HTTP: query it, and ingest outside events in batches."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from baton.core.events import CloudEvent
from baton.core.roles import Role
from baton.server.auth import guard
from baton.server.context import Control, control
from baton.server.views import Event, JsonValue, Text, event_view

router = APIRouter(prefix="/api/v1", tags=["events"])
Ctl = Annotated[Control, Depends(control)]
MAX_BATCH = 10_000
MAX_SEQ = 2**63 - 1  # a seq is a signed 64-bit integer in both stores


class EventPage(BaseModel):
    items: list[Event]
    next_after: int = Field(description="Pass back as `after` to read on from here.")


class IncomingEvent(BaseModel):
    """A CloudEvent (structured mode, JSON data) sent to the log from outside."""

    model_config = ConfigDict(extra="forbid")

    specversion: str = Field(default="1.0", pattern=r"^1\.0$")
    id: Text | None = Field(default=None, min_length=1, max_length=200)
    type: Text = Field(min_length=1, max_length=200)
    source: Text = Field(min_length=1, max_length=500)
    subject: Text | None = Field(default=None, max_length=500)
    time: datetime | None = Field(default=None, description="RFC 3339; without an offset, UTC.")
    datacontenttype: Text | None = Field(default=None, max_length=200)
    correlationid: Text | None = Field(default=None, max_length=500)
    data: JsonValue = None

    @field_validator("time")
    @classmethod
    def _a_calendar_time(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("the time in UTC falls outside the years 1 to 9999") from None
        return value


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[IncomingEvent] = Field(min_length=1, max_length=MAX_BATCH)


class Ingested(BaseModel):
    received: int
    appended: int = Field(description="Fewer than received when some ids were already logged.")


@router.get("/events", response_model=EventPage, **guard(Role.VIEWER))
def query_events(
    ctl: Ctl,
    type: Annotated[list[str] | None, Query(description="Repeat for any of several.")] = None,
    workflow: str | None = None,
    run_id: str | None = None,
    correlation_id: str | None = None,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="Events after this seq.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    found = ctl.app.store.list_events(
        run_id, None, correlation_id, after, limit, workflow=workflow, types=type or None
    )
    return EventPage(
        items=[event_view(e) for e in found], next_after=found[-1].seq if found else after
    )


@router.post("/events", status_code=202, response_model=Ingested, **guard(Role.OPERATOR))
def ingest(body: EventBatch, ctl: Ctl) -> Ingested:
    """Append a batch of CloudEvents in one transaction (answered after the commit). An event
    whose id is already in the log is skipped, so a batch can be sent again safely."""
    now = time.time()
    events = [
        CloudEvent(
            type=e.type,
            source=e.source,
            subject=e.subject,
            data=e.data,
            correlationid=e.correlationid,
            time=e.time.timestamp() if e.time is not None else now,
            **({"id": e.id} if e.id is not None else {}),
        )
        for e in body.events
    ]
    appended = ctl.app.store.ingest_events(events).result()
    hub = ctl.extras.get("hub")
    if hub is not None and appended:
        hub.hint()  # streams get them now rather than at the hub's next poll
    return Ingested(received=len(events), appended=appended)
