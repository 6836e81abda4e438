"""Records as JSON documents: timestamps in RFC 3339, stored JSON columns decoded."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from baton.core.events import CloudEvent, rfc3339
from baton.store.records import EventRecord, RunRecord, StepRecord

_JSON_COLUMNS = ("input", "output", "error", "data")


def decode(text: str | None) -> Any:
    """A stored JSON column as a value (None stays None)."""
    return None if text is None else json.loads(text)


def _document(record: RunRecord | StepRecord) -> dict[str, Any]:
    doc = asdict(record)
    for key, value in doc.items():
        if key in _JSON_COLUMNS:
            doc[key] = decode(value)
        elif key.endswith("_at") and value is not None:
            doc[key] = rfc3339(value)
    return doc


def run_document(run: RunRecord) -> dict[str, Any]:
    return _document(run)


def step_document(step: StepRecord) -> dict[str, Any]:
    return _document(step)


def event_document(event: EventRecord) -> dict[str, Any]:
    """The event as CloudEvents 1.0 JSON (`correlationid`, `runid` extensions), plus `seq`."""
    cloud = CloudEvent(
        type=event.type,
        source=event.source,
        subject=event.subject,
        data=decode(event.data),
        correlationid=event.correlation_id,
        runid=event.run_id,
        id=event.id,
        time=event.time,
    )
    return {"seq": event.seq, **cloud.to_dict()}
