"""CloudEvents 1.0 envelope and the event types Baton emits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from baton.core.ids import new_id

SPECVERSION = "1.0"

RUN_ENQUEUED = "baton.run.enqueued"
RUN_STARTED = "baton.run.started"
RUN_SUSPENDED = "baton.run.suspended"
RUN_RECOVERED = "baton.run.recovered"
RUN_SUCCEEDED = "baton.run.succeeded"
RUN_FAILED = "baton.run.failed"
RUN_CANCELLED = "baton.run.cancelled"
RUN_DEAD = "baton.run.dead"
RUN_REDRIVEN = "baton.run.redriven"
RUN_FORKED = "baton.run.forked"
RUN_DEBOUNCED = "baton.run.debounced"  # a debounced start replaced a queued run's input
STEP_COMPLETED = "baton.step.completed"
STEP_RETRYING = "baton.step.retrying"
STEP_FAILED = "baton.step.failed"
RUN_COMPENSATING = "baton.run.compensating"  # failed or cancelled: undoing its completed steps
RUN_COMPENSATED = "baton.run.compensated"
COMPENSATION_COMPLETED = "baton.compensation.completed"
COMPENSATION_RETRYING = "baton.compensation.retrying"
COMPENSATION_FAILED = "baton.compensation.failed"  # for good: the run ends DEAD
SCHEDULE_FIRED = "baton.schedule.fired"  # a slot (or a trigger, a backfill) started a run
SCHEDULE_SKIPPED = "baton.schedule.skipped"  # slots that started no run: catch-up or overlap
SCHEDULE_PAUSED = "baton.schedule.paused"
SCHEDULE_RESUMED = "baton.schedule.resumed"
RUN_WAITING = "baton.run.waiting"
SIGNAL_SENT = "baton.signal.sent"
SIGNAL_RECEIVED = "baton.signal.received"
APPROVAL_REQUESTED = "baton.approval.requested"
APPROVAL_DECIDED = "baton.approval.decided"
APPROVAL_TIMED_OUT = "baton.approval.timed_out"
APPROVAL_ESCALATED = "baton.approval.escalated"
CHILD_STARTED = "baton.child.started"  # on the parent: it started a child run
FLAG_CHANGED = "baton.flag.changed"  # a feature flag was set or deleted (subject: its name)


@dataclass(slots=True)
class CloudEvent:
    """A CloudEvents 1.0 event. `correlationid` and `runid` are extension attributes."""

    type: str
    source: str
    subject: str | None = None
    data: dict[str, Any] | None = None
    correlationid: str | None = None
    runid: str | None = None
    id: str = field(default_factory=new_id)
    time: float = 0.0
    datacontenttype: str = "application/json"
    specversion: str = SPECVERSION

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "time": rfc3339(self.time),
            "datacontenttype": self.datacontenttype,
        }
        if self.subject is not None:
            out["subject"] = self.subject
        if self.correlationid is not None:
            out["correlationid"] = self.correlationid
        if self.runid is not None:
            out["runid"] = self.runid
        if self.data is not None:
            out["data"] = self.data
        return out


def run_event(
    type: str,
    source: str,
    run: Any,
    now: float,
    data: dict[str, Any] | None = None,
) -> CloudEvent:
    """An event about a run; `run` is anything with run_id, correlation_id, workflow, version."""
    body: dict[str, Any] = {"workflow": run.workflow, "version": run.version}
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


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
