"""Durable waits inside a workflow: sleep, signals and human approvals.

Each wait is a checkpoint like a step. While it is pending the run is a WAITING row with a
timer (`available_at`) and nothing else: no thread, task or worker slot. When the timer comes,
or a signal or decision wakes it, any worker claims the run, replays it to the wait, and goes on.

In an `async def` workflow every wait is awaited, like a step.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from baton.core import events as ev
from baton.core import serialization
from baton.core.errors import (
    ApprovalTimeout,
    DefinitionError,
    NotInWorkflow,
    SignalTimeout,
)
from baton.core.events import CloudEvent
from baton.engine import failures
from baton.engine.execution import Execution, current, in_step
from baton.store.records import ApprovalRecord, StepStatus

Durable = Generator[Future, Any, Any]


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of `wait_for_approval`."""

    approved: bool
    status: str  # APPROVED, REJECTED or TIMED_OUT
    by: str | None
    comment: str | None
    at: float | None
    timed_out: bool

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Decision:
        return cls(
            bool(doc["approved"]),
            doc["status"],
            doc.get("by"),
            doc.get("comment"),
            doc.get("at"),
            bool(doc.get("timed_out")),
        )


@dataclass(frozen=True, slots=True)
class Escalate:
    """On timeout, hand the approval to other assignees with a new timeout."""

    to: Sequence[str]
    timeout: float | None = None
    then: Literal["reject", "fail"] | Escalate = "reject"


OnTimeout = Literal["reject", "fail"] | Escalate


# -- public calls ----------------------------------------------------------------------------
def sleep(seconds: float) -> Any:
    """Pause the run durably for `seconds`; survives restarts and holds no worker."""
    if not isinstance(seconds, int | float) or seconds < 0:
        raise ValueError(f"baton.sleep takes a number of seconds >= 0, got {seconds!r}")
    ex = _execution("baton.sleep")
    return ex.drive(_sleep(ex, float(seconds), None))


def sleep_until(when: float | datetime) -> Any:
    """Pause the run durably until `when` (epoch seconds or an aware datetime)."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError("baton.sleep_until needs an aware datetime (with tzinfo)")
        when = when.timestamp()
    if not isinstance(when, int | float):
        raise ValueError(f"baton.sleep_until takes a timestamp or datetime, got {when!r}")
    ex = _execution("baton.sleep_until")
    return ex.drive(_sleep(ex, None, float(when)))


def wait_for_signal(name: str, timeout: float | None = None) -> Any:
    """Wait for the next signal `name` sent to this run and return its payload.

    A signal sent before the run waits is kept; each signal is consumed once. Raises
    `SignalTimeout` after `timeout` seconds without one.
    """
    _check_name(name, "wait_for_signal")
    _check_timeout(timeout, "wait_for_signal")
    ex = _execution("baton.wait_for_signal")
    return ex.drive(_signal(ex, name, timeout))


def wait_for_approval(
    name: str,
    timeout: float | None = None,
    assignees: Sequence[str] | None = None,
    on_timeout: OnTimeout = "reject",
) -> Any:
    """Wait for a human decision ("MAN mode") and return a `Decision`.

    `assignees` limits who may decide. On timeout: "reject" returns a rejected decision with
    `timed_out=True`, "fail" raises `ApprovalTimeout`, `Escalate(to=[...], timeout=...)` hands
    it to other assignees.
    """
    _check_name(name, "wait_for_approval")
    _check_timeout(timeout, "wait_for_approval")
    people = _people(assignees, "assignees")
    policy = _policy(name, timeout, on_timeout)
    ex = _execution("baton.wait_for_approval")
    return ex.drive(_approval(ex, name, timeout, people, policy))


# -- durable logic (generators of store writes, driven sync or async) -------------------------
def _sleep(ex: Execution, seconds: float | None, until: float | None) -> Durable:
    seq, rec = yield from ex.enter("sleep", "baton.sleep")
    now = ex.rt.clock.now()
    if rec is not None and rec.status == StepStatus.SUCCEEDED:
        return None
    if rec is None:
        wake_at = until if until is not None else now + (seconds or 0.0)
        rec = ex.record(seq, "baton.sleep", "sleep", StepStatus.WAITING, now, wake_at)
    else:
        wake_at = serialization.loads(rec.output)
    if now >= wake_at:
        done = ex.record(seq, "baton.sleep", "sleep", StepStatus.SUCCEEDED, rec.started_at, wake_at)
        done.finished_at = now
        yield ex.rt.store.save_step(ex.fence, done, [])
        return None
    yield from ex.suspend(wake_at, rec, {"reason": "sleep", "seq": seq, "until": wake_at})
    return None  # not reached: suspend unwinds


def _signal(ex: Execution, name: str, timeout: float | None) -> Durable:
    step_name = f"baton.signal:{name}"
    seq, rec = yield from ex.enter("signal", step_name)
    if rec is not None and rec.status == StepStatus.SUCCEEDED:
        return serialization.loads(rec.output)
    if rec is not None and rec.status == StepStatus.FAILED:
        raise failures.rebuild(serialization.loads(rec.error))
    now = ex.rt.clock.now()
    if rec is None:
        deadline = None if timeout is None else now + timeout
        started = now
    else:
        deadline = serialization.loads(rec.output)["deadline"]
        started = rec.started_at
    waiting = ex.record(
        seq, step_name, "signal", StepStatus.WAITING, started, {"deadline": deadline}
    )
    wake = ex.wake_time(deadline)
    error = serialization.dumps(failures.describe(SignalTimeout(name, timeout or 0.0), step_name))
    outcome, payload = yield ex.rt.store.receive_signal(
        ex.fence,
        ex.run.wakeups,
        waiting,
        name,
        deadline,
        wake,
        now,
        error,
        {
            "received": [ex.event(ev.SIGNAL_RECEIVED, now, {"name": name, "seq": seq})],
            "waiting": [
                ex.event(ev.RUN_WAITING, now, {"reason": "signal", "name": name, "seq": seq})
            ],
        },
    )
    if outcome == "received":
        return serialization.loads(payload)
    if outcome == "timeout":
        raise SignalTimeout(name, timeout or 0.0)
    ex.suspended(wake)
    return None  # not reached


def _approval(
    ex: Execution,
    name: str,
    timeout: float | None,
    assignees: list[str],
    policy: dict[str, Any],
) -> Durable:
    step_name = f"baton.approval:{name}"
    seq, rec = yield from ex.enter("approval", step_name)
    if rec is not None and rec.status == StepStatus.SUCCEEDED:
        return Decision.from_doc(serialization.loads(rec.output))
    if rec is not None and rec.status == StepStatus.FAILED:
        raise failures.rebuild(serialization.loads(rec.error))
    now = ex.rt.clock.now()
    started = rec.started_at if rec is not None else now
    waiting = ex.record(seq, step_name, "approval", StepStatus.WAITING, started, None)
    run = ex.run
    request = ApprovalRecord(
        run.run_id,
        seq,
        name,
        run.workflow,
        run.correlation_id,
        assignees,
        now,
        None if timeout is None else now + timeout,
        policy,
    )

    def make_event(kind: str, appr: ApprovalRecord, data: dict[str, Any]) -> CloudEvent:
        return approval_event(kind, ex.rt.source, appr, now, data)

    outcome, doc = yield ex.rt.store.await_approval(
        ex.fence, run.wakeups, waiting, request, run.deadline_at, now, ex.rt.source, make_event
    )
    if outcome == "decided":
        return Decision.from_doc(doc)  # type: ignore[arg-type]
    if outcome == "failed":
        raise failures.rebuild(doc)  # type: ignore[arg-type]
    ex.suspended(doc["wake"])  # type: ignore[index]
    return None  # not reached


def approval_event(
    kind: str, source: str, appr: ApprovalRecord, now: float, data: dict[str, Any]
) -> CloudEvent:
    types = {
        "requested": ev.APPROVAL_REQUESTED,
        "decided": ev.APPROVAL_DECIDED,
        "timed_out": ev.APPROVAL_TIMED_OUT,
        "escalated": ev.APPROVAL_ESCALATED,
    }
    body = {
        "workflow": appr.workflow,
        "name": appr.name,
        "seq": appr.seq,
        "assignees": appr.assignees,
        "deadline": appr.deadline_at,
    }
    body.update(data)
    return CloudEvent(
        type=types[kind],
        source=source,
        subject=appr.run_id,
        runid=appr.run_id,
        correlationid=appr.correlation_id,
        time=now,
        data=body,
    )


# -- checks --------------------------------------------------------------------------------
def _execution(what: str) -> Execution:
    ex = current.get()
    if ex is None or in_step.get() is not None:
        raise NotInWorkflow(what)
    return ex


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} needs a non-empty name, got {name!r}")


def _check_timeout(timeout: float | None, what: str) -> None:
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise ValueError(f"{what}: timeout must be a number of seconds > 0, got {timeout!r}")


def _people(names: Sequence[str] | None, what: str) -> list[str]:
    if names is None:
        return []
    if isinstance(names, str):
        return [names]
    out = list(names)
    if not all(isinstance(n, str) and n for n in out):
        raise ValueError(f"{what} must be non-empty strings, got {out!r}")
    return out


def _policy(name: str, timeout: float | None, on_timeout: OnTimeout) -> dict[str, Any]:
    """The timeout policy as stored: {"action": "reject" | "fail" | "escalate", ...}."""
    if on_timeout == "reject":
        return {"action": "reject"}
    if on_timeout == "fail":
        err = failures.describe(ApprovalTimeout(name, timeout or 0.0), f"baton.approval:{name}")
        return {"action": "fail", "error": serialization.dumps(err)}
    if isinstance(on_timeout, Escalate):
        _check_timeout(on_timeout.timeout, "Escalate")
        to = _people(on_timeout.to, "Escalate(to=...)")
        if not to:
            raise DefinitionError(f"approval {name!r}: Escalate needs at least one assignee")
        return {
            "action": "escalate",
            "to": to,
            "timeout": on_timeout.timeout,
            "then": _policy(name, on_timeout.timeout, on_timeout.then),
        }
    raise DefinitionError(
        f"approval {name!r}: on_timeout must be 'reject', 'fail' or baton.Escalate(...), "
        f"got {on_timeout!r}"
    )
