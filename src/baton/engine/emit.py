"""Building the CloudEvents that record a run's transitions."""

from __future__ import annotations

from typing import Any

from baton.core.events import CloudEvent
from baton.store.records import RunRecord


def run_event(
    type: str, source: str, run: RunRecord, now: float, data: dict[str, Any] | None = None
) -> CloudEvent:
    body = {"workflow": run.workflow, "version": run.version}
    if data:
        body.update(data)
    return CloudEvent(
        type=type,
        source=source,
        subject=run.run_id,
        runid=run.run_id,
        correlationid=run.correlation_id,
        time=now,
        data=body,
    )
