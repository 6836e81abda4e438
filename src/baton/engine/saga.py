"""Sagas: undoing the completed steps of a run that failed for good or was cancelled.

A step names its compensation with `@app.step(compensate="refund")` (a step name, or the
decorated step function). The compensation is called with the same arguments as the step it
undoes; so that it can run in any process after any restart, without the workflow function,
those arguments are kept in the step's checkpoint (`steps.input`) when the step succeeds.

When the run fails for good (an exception the workflow does not catch, or a step whose
retries are exhausted) or is cancelled, and it has completed steps with compensations, the
store turns it COMPENSATING in the same transaction, keeping the original error and bumping its
fence. A worker that claims a COMPENSATING run runs `compensate` instead of the workflow: the
compensations of the completed steps, newest first, each a checkpoint of kind 'compensation'
numbered `-seq` (seq: the step it undoes), with the compensation step's own retry policy and
durable back-off. All done: COMPENSATED. One fails for good: DEAD, with an error naming it and
the original error under "cause"; `app.redrive` then resumes the compensation.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Generator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from baton.core import events as ev
from baton.core import serialization
from baton.core.errors import (
    CompensationFailed,
    DefinitionError,
    RunCancelled,
    SerializationError,
)
from baton.core.events import CloudEvent, run_event
from baton.core.retry import Retry
from baton.engine import execution, failures
from baton.engine.registry import Registry, StepDef
from baton.observability.logging import bind_contextvars, get_logger
from baton.store.records import RunRecord, RunStatus, StepRecord, StepStatus

if TYPE_CHECKING:
    from baton.engine.execution import Execution
    from baton.engine.runtime import Runtime
    from baton.store.protocol import Store

log = get_logger("baton.saga")
Durable = Generator[Future, Any, Any]
Compensate = str | Callable[..., Any]

KIND = "compensation"  # the `kind` of a compensation's checkpoint row
_REASONS = {RunStatus.FAILED: "failed", RunStatus.DEAD: "retries exhausted"}


# -- definitions -----------------------------------------------------------------------------
def declared(compensate: Any) -> Compensate | None:
    """Check a `compensate=` option at decoration time: a step name or a function."""
    if compensate is None or callable(compensate):
        return compensate
    if isinstance(compensate, str) and compensate:
        return compensate
    raise DefinitionError(
        f"compensate= takes the name of a step or a step function, got {compensate!r}"
    )


def compensation_of(registry: Registry, step: StepDef) -> StepDef | None:
    """The step that undoes `step` (None when it declares none); DefinitionError, naming both
    steps, when the declared compensation is not a registered step."""
    target = step.compensate
    if target is None:
        return None
    if isinstance(target, str):
        found = registry.find_step(target)
    else:
        inner = getattr(target, "step", None)
        if isinstance(inner, StepDef):  # the decorated step function
            found = inner if registry.find_step(inner.name) is inner else None
        else:  # the undecorated function, decorated later with @app.step()
            found = next((s for s in registry.all_steps() if s.fn is target), None)
    if found is None:
        similar = [
            s.name
            for s in registry.all_steps()
            if isinstance(target, str) and s.name.endswith(f".{target}")
        ]
        hint = f" (did you mean {similar[0]!r}?)" if similar else ""
        raise DefinitionError(
            f"step {step.name!r} declares compensate={_label(target)}, but no such step is "
            f"registered with this App{hint}; register {_label(target)} with @app.step, or fix "
            f"the name"
        )
    return found


def check(registry: Registry) -> None:
    """Every declared compensation resolves (called when the App's worker launches)."""
    for step in registry.all_steps():
        compensation_of(registry, step)


def kept_input(step: StepDef, args: tuple, kwargs: dict) -> str | None:
    """A step call's arguments as kept in its checkpoint, for its compensation (None when the
    step declares no compensation)."""
    if step.compensate is None:
        return None
    return serialization.dumps(
        {"args": list(args), "kwargs": kwargs}, f"arguments of step {step.name!r}"
    )


# -- entering the compensation phase --------------------------------------------------------------
def fail(ex: Execution, exc: BaseException, step: str | None, attempts: int | None) -> Future:
    """The workflow raised `exc`: end the run FAILED, or COMPENSATING if it has steps to undo."""
    now = ex.rt.clock.now()
    doc = failures.describe(exc, step, attempts)
    log.warning("run failed", error_type=doc["type"], error=doc["message"])
    failed = ex.event(ev.RUN_FAILED, now, {"step": step, "error": _summary(doc)})
    return end(ex, RunStatus.FAILED, doc, [failed], [])


def end(
    ex: Execution,
    status: RunStatus,
    doc: dict[str, Any],
    ended: list[CloudEvent],
    before: list[CloudEvent],
    step: StepRecord | None = None,
) -> Future:
    """End the run as `status` (FAILED or DEAD) with error `doc` and events `ended`, unless it
    has completed steps with compensations: then, in the same transaction, it turns
    COMPENSATING with events `before` and baton.run.compensating, for a worker to claim it.
    `step` (the failed step's checkpoint) is written either way."""
    now = ex.rt.clock.now()
    data = {"reason": _REASONS[status], "step": doc.get("step"), "error": _summary(doc)}
    compensating = [*before, ex.event(ev.RUN_COMPENSATING, now, data)]
    fut = ex.rt.store.fail_run(
        ex.run.run_id,
        ex.fence,
        status,
        serialization.dumps(doc),
        now,
        {"ended": ended, "compensating": compensating},
        step,
    )
    fut.add_done_callback(functools.partial(_handed_back, ex.rt, ex.run.run_id))
    return fut


def cancel(store: Store, source: str, run: RunRecord, now: float, cancelled: CloudEvent) -> Future:
    """Cancel `run`: CANCELLED, or COMPENSATING if it has completed steps with compensations."""
    data = {"reason": "cancelled", "previous": run.status}
    compensating = run_event(ev.RUN_COMPENSATING, source, run, now, data)
    error = serialization.dumps(failures.describe(RunCancelled(run.run_id)))
    return store.cancel_or_compensate(
        run.run_id, now, error, {"cancelled": [cancelled], "compensating": [compensating]}
    )


def _handed_back(rt: Runtime, run_id: str, fut: Future) -> None:
    """After the commit: a run that turned COMPENSATING is claimable now; look for it."""
    if fut.cancelled() or fut.exception() is not None:
        return
    if fut.result() == RunStatus.COMPENSATING:
        log.warning("run compensating", run_id=run_id)
        rt.wake()


# -- the compensation phase (a claimed COMPENSATING run) ------------------------------------------
def compensate(ex: Execution) -> Durable:
    """Undo the run's completed steps, newest first, skipping those whose compensation
    checkpoint is written; then end the run COMPENSATED."""
    t0 = time.perf_counter()
    recorded = ex.recorded
    todo = [s for _, s in sorted(recorded.items(), reverse=True) if _compensable(s)]
    log.info("compensating", steps=len(todo))
    for done in todo:
        mark = recorded.get(-done.seq)
        if mark is not None and mark.kind == KIND and mark.status == StepStatus.SUCCEEDED:
            continue
        yield from _gate(ex)
        yield from _undo(ex, done, mark)
    now = ex.rt.clock.now()
    ms = round((time.perf_counter() - t0) * 1000, 3)
    event = ex.event(ev.RUN_COMPENSATED, now, {"compensations": len(todo), "duration_ms": ms})
    log.info("run compensated", compensations=len(todo))
    yield ex.rt.store.finish_run(
        ex.run.run_id, ex.fence, RunStatus.COMPENSATED, None, ex.run.error, now, [event]
    )


def _compensable(step: StepRecord) -> bool:
    return step.kind == "step" and step.status == StepStatus.SUCCEEDED and step.input is not None


def _gate(ex: Execution) -> Durable:
    """Before each compensation: stop if the run was lost, or hand it back if draining."""
    gate = ex._gate()
    if gate is not None:
        if gate.future is not None:
            yield gate.future
        raise gate.exc  # type: ignore[misc]


def _undo(ex: Execution, done: StepRecord, mark: StepRecord | None) -> Durable:
    """One attempt of the compensation of checkpoint `done`; `mark` is its earlier attempts."""
    seq = -done.seq
    attempt = (mark.attempts if mark is not None else 0) + 1
    started_at = mark.started_at if mark is not None else ex.rt.clock.now()
    try:
        target = _target(ex, done)
    except DefinitionError as exc:
        yield from _failed(ex, done, _declared_name(ex, done), None, attempt, started_at, exc)
        return
    call = serialization.loads(done.input)
    args, kwargs = call.get("args", []), call.get("kwargs", {})
    t0 = time.perf_counter()
    ok, value = yield ex.rt.submit_coroutine(_attempt(ex, target, seq, attempt, args, kwargs))
    output = None
    if ok:
        try:
            output = serialization.dumps(value, f"output of compensation {target.name!r}")
        except SerializationError as exc:
            ok, value = False, exc
    if not ok:
        yield from _failed(ex, done, target.name, target.retry, attempt, started_at, value)
        return
    now = ex.rt.clock.now()
    rec = _record(ex, done, target.name, StepStatus.SUCCEEDED, attempt, started_at, now)
    rec.output = output
    data = _data(done, target.name, attempt)
    data["duration_ms"] = round((time.perf_counter() - t0) * 1000, 3)
    log.info("compensation completed", step=target.name, undoes=done.name, attempt=attempt)
    yield ex.rt.store.save_step(ex.fence, rec, [ex.event(ev.COMPENSATION_COMPLETED, now, data)])


async def _attempt(
    ex: Execution, step: StepDef, seq: int, attempt: int, args: list, kwargs: dict
) -> tuple[bool, Any]:
    """Run the compensation once on the runtime loop: (True, result) or (False, error).

    Its error comes back as a value, so that the driver never mistakes it for a store error.
    """
    execution.in_step.set((step.name, seq, attempt))
    bind_contextvars(step=step.name)
    try:
        return True, await ex._invoke_async(step, tuple(args), kwargs)
    except Exception as exc:
        return False, exc


def _failed(
    ex: Execution,
    done: StepRecord,
    name: str,
    policy: Retry | None,
    attempt: int,
    started_at: float,
    exc: BaseException,
) -> Durable:
    """A failed attempt: retry it later under `policy`, or end the run DEAD."""
    now = ex.rt.clock.now()
    doc = failures.describe(exc, name, attempt)
    rec = _record(ex, done, name, StepStatus.RETRYING, attempt, started_at, now)
    rec.error = serialization.dumps(doc)
    data = _data(done, name, attempt)
    data["error"] = _summary(doc)
    retryable = (
        policy is not None
        and policy.is_retryable(exc)
        and not isinstance(exc, SerializationError | DefinitionError)
    )
    if retryable and attempt < policy.max_attempts:  # type: ignore[union-attr]
        rng = random.Random(f"{ex.run.run_id}:{rec.seq}:{attempt}")
        delay = policy.delay(attempt, rng)  # type: ignore[union-attr]
        data["delay"] = delay
        log.info("compensation retrying", step=name, attempt=attempt, delay=delay)
        event = ex.event(ev.COMPENSATION_RETRYING, now, data)
        yield ex.rt.store.retry_step_later(ex.fence, rec, now + delay, [event])
        ex.rt.due_at(now + delay)
        raise execution.Unwind("compensation retry scheduled")
    rec.status = StepStatus.FAILED
    failure = CompensationFailed(
        ex.run.run_id, name, done.name, done.seq, attempt, doc["type"], doc["message"]
    )
    run_doc = failures.describe(failure, name, attempt)
    run_doc["traceback"] = doc["traceback"]  # the compensation's own, more useful than ours
    run_doc["compensation"] = {"step": name, "undoes": done.name, "seq": rec.seq}
    run_doc["cause"] = serialization.loads(ex.run.error)
    log.warning("run dead: a compensation failed", step=name, undoes=done.name, error=str(exc))
    dead = ex.event(
        ev.RUN_DEAD,
        now,
        {"step": name, "attempts": attempt, "error": _summary(run_doc), "compensation": True},
    )
    yield ex.rt.store.finish_run(
        ex.run.run_id,
        ex.fence,
        RunStatus.DEAD,
        None,
        serialization.dumps(run_doc),
        now,
        [ex.event(ev.COMPENSATION_FAILED, now, data), dead],
        step=rec,
    )
    raise execution.Unwind("dead")


def _target(ex: Execution, done: StepRecord) -> StepDef:
    """The compensation step of checkpoint `done`, as registered in this process."""
    registry = ex.rt.registry
    forward = registry.find_step(done.name)
    if forward is None:
        raise DefinitionError(
            f"step {done.name!r} (#{done.seq}) completed with a compensation, but no step of "
            f"that name is registered here, so its compensation is unknown"
        )
    target = compensation_of(registry, forward)
    if target is None:
        raise DefinitionError(
            f"step {done.name!r} (#{done.seq}) completed with a compensation, but it declares "
            f"no compensate= any more"
        )
    return target


def _declared_name(ex: Execution, done: StepRecord) -> str:
    forward = ex.rt.registry.find_step(done.name)
    target = forward.compensate if forward is not None else None
    if target is None:
        return f"compensation of {done.name}"
    return target if isinstance(target, str) else getattr(target, "__name__", repr(target))


def _record(
    ex: Execution,
    done: StepRecord,
    name: str,
    status: str,
    attempts: int,
    started_at: float,
    now: float,
) -> StepRecord:
    """The checkpoint row of the compensation of `done`: seq -done.seq, same arguments."""
    return StepRecord(
        ex.run.run_id,
        -done.seq,
        name,
        done.args_hash,
        status,
        attempts,
        started_at,
        now,
        None,
        None,
        ex.rt.worker_id,
        KIND,
        done.input,
    )


def _data(done: StepRecord, name: str, attempt: int) -> dict[str, Any]:
    return {"step": name, "undoes": done.name, "seq": -done.seq, "attempt": attempt}


def _summary(doc: dict[str, Any]) -> dict[str, Any]:
    return {"type": doc.get("type"), "message": doc.get("message")}


def _label(target: Compensate) -> str:
    if isinstance(target, str):
        return repr(target)
    return getattr(target, "__qualname__", None) or repr(target)
