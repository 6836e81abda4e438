"""Composition inside a workflow: child workflows, and fan-out / fan-in over steps and children.

Starting a child is a checkpoint (kind `child`, its output the child's run id) written in the
same transaction as the child's run row, so a replay or a crash never makes two children.
Waiting for its result is another checkpoint (kind `child_result`) and a durable wait: the
parent is a WAITING row holding no worker, and the child's end wakes it.

`gather` numbers its calls before running any (a step takes one checkpoint, a child two: its
start and its result), so a replay finds each call's checkpoint whatever order they finished
in. Steps run at once (threads of the step pool in a sync workflow, tasks in an async one) and
each records its own checkpoint as soon as it returns. When all have finished, the run is
suspended once if a step waits out a retry back-off or a child has not ended; otherwise the
first failure in argument order is raised, or the results come back in argument order.

In an `async def` workflow each of these calls is awaited, like a step.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import reprlib
import time
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Iterable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from baton.core import events as ev
from baton.core import serialization
from baton.core.errors import (
    InvalidConcurrency,
    NotADeferredCall,
    NotInWorkflow,
    RunCancelled,
    RunFailed,
    StepTimeout,
)
from baton.core.events import run_event
from baton.core.ids import new_id
from baton.engine import failures
from baton.engine.execution import Execution, RetryLater, Unwind, _Plan, current, in_step
from baton.engine.registry import StepDef, WorkflowDef
from baton.observability.logging import bind_contextvars, unbind_contextvars
from baton.store.records import RunRecord, RunStatus, StepRecord, StepStatus

Durable = Generator[Future, Any, Any]


# -- pending calls -------------------------------------------------------------------------
class StepCall(Coroutine[Any, Any, Any]):
    """A step call that has not run: `step.defer(*args, **kwargs)` anywhere, or `step(...)` in
    an `async def` workflow. `baton.gather` runs it; awaiting it runs it on its own."""

    __slots__ = ("_coro", "_ex", "args", "kwargs", "step")

    def __init__(
        self, step: StepDef, args: tuple, kwargs: dict, ex: Execution | None = None
    ) -> None:
        self.step = step
        self.args = args
        self.kwargs = kwargs
        self._ex = ex
        self._coro: Coroutine[Any, Any, Any] | None = None

    def __repr__(self) -> str:
        return f"<pending call of step {self.step.name!r}>"

    @property
    def started(self) -> bool:
        return self._coro is not None

    def _inner(self) -> Coroutine[Any, Any, Any]:
        if self._coro is None:
            ex = self._ex or current.get()
            if ex is None or in_step.get():
                self._coro = _plain(self.step, self.args, self.kwargs)
            else:
                self._coro = ex.call_async(self.step, self.args, self.kwargs)
        return self._coro

    # a coroutine (so asyncio.create_task and friends take it) that makes the real one lazily
    def send(self, value: Any) -> Any:
        return self._inner().send(value)

    def throw(self, *exc: Any) -> Any:
        return self._inner().throw(*exc)

    def close(self) -> None:
        if self._coro is not None:
            self._coro.close()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._inner().__await__()


async def _plain(step: StepDef, args: tuple, kwargs: dict) -> Any:
    """A step awaited outside a run: a plain call, as `step(...)` is there."""
    if step.is_async:
        return await step.fn(*args, **kwargs)
    return step.fn(*args, **kwargs)


def defer(step: StepDef) -> Callable[..., StepCall]:
    """`step.defer`: a pending call of `step`, for `baton.gather`."""

    def pending(*args: Any, **kwargs: Any) -> StepCall:
        return StepCall(step, args, kwargs)

    return pending


@dataclass(frozen=True, slots=True)
class ChildCall:
    """A child run that has not started: `baton.child(workflow, *args, **kwargs)`."""

    workflow: str
    args: tuple
    kwargs: dict
    input: str  # the serialized arguments
    version: str | None = None
    queue: str = "default"
    priority: int = 0
    timeout: float | None = None

    def __repr__(self) -> str:
        return f"<pending child run of workflow {self.workflow!r}>"


def child(
    workflow: str | Callable[..., Any],
    /,
    *args: Any,
    version: str | None = None,
    queue: str = "default",
    priority: int = 0,
    timeout: float | None = None,
    **kwargs: Any,
) -> ChildCall:
    """A pending child run of `workflow` (a registered workflow or its name), for
    `baton.gather`. The options are those of `App.start`; the child shares the parent's
    correlation id, and its idempotency key is `<parent run id>:<seq>`."""
    name = _workflow_name(workflow)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an int, got {type(priority).__name__}")
    if not isinstance(queue, str) or not queue:
        raise ValueError(f"queue must be a non-empty string, got {queue!r}")
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    payload = serialization.dumps({"args": list(args), "kwargs": kwargs}, "workflow input")
    version = None if version is None else str(version)
    return ChildCall(name, args, kwargs, payload, version, queue, priority, timeout)


class ChildHandle:
    """A child run started by `baton.start_child`. `result()` waits for it durably."""

    __slots__ = ("id", "seq", "workflow")

    def __init__(self, run_id: str, workflow: str, seq: int) -> None:
        self.id = run_id
        self.workflow = workflow
        self.seq = seq  # the checkpoint that started it

    def __repr__(self) -> str:
        return f"ChildHandle({self.id!r}, workflow={self.workflow!r})"

    def result(self) -> Any:
        """The child's output, once it has ended (a checkpoint of its own). Raises RunFailed
        or RunCancelled as `RunHandle.result` does. Until then the parent is suspended: it is
        WAITING, holds no worker, and the child's end wakes it."""
        ex = _execution("ChildHandle.result")
        return ex.drive(_result(ex, self))


# -- public calls --------------------------------------------------------------------------
def start_child(
    workflow: str | Callable[..., Any],
    /,
    *args: Any,
    version: str | None = None,
    queue: str = "default",
    priority: int = 0,
    timeout: float | None = None,
    **kwargs: Any,
) -> Any:
    """Start a child run of `workflow` and return its `ChildHandle` (awaited in an async
    workflow). The child run is created with this checkpoint, once, whatever replays."""
    ex = _execution("baton.start_child")
    call = child(
        workflow, *args, version=version, queue=queue, priority=priority, timeout=timeout, **kwargs
    )
    return ex.drive(_start(ex, _Child(ex, call)))


def run_child(
    workflow: str | Callable[..., Any],
    /,
    *args: Any,
    version: str | None = None,
    queue: str = "default",
    priority: int = 0,
    timeout: float | None = None,
    **kwargs: Any,
) -> Any:
    """`start_child(...)` then `.result()`: run a child workflow and return its output."""
    ex = _execution("baton.run_child")
    call = child(
        workflow, *args, version=version, queue=queue, priority=priority, timeout=timeout, **kwargs
    )
    return ex.drive(_run(ex, _Child(ex, call)))


def gather(*calls: StepCall | ChildCall) -> Any:
    """Run pending calls (`step.defer(...)`, `baton.child(...)`, or in an async workflow
    `step(...)`) concurrently and return their results in argument order."""
    ex = _execution("baton.gather")
    checked = [_pending(call, index) for index, call in enumerate(calls)]
    resolved = [c if isinstance(c, StepCall) else _Child(ex, c) for c in checked]
    return _fan_out(ex, resolved, None)


def map(step: Callable[..., Any], items: Iterable[Any], concurrency: int | None = None) -> Any:
    """Apply `step` to each item (one argument each), at most `concurrency` at once, and
    return the results in item order. Checkpoints as `gather`."""
    ex = _execution("baton.map")
    definition = getattr(step, "step", None)
    if not isinstance(definition, StepDef):
        raise TypeError(f"baton.map takes a registered step (@app.step), got {step!r}")
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        raise InvalidConcurrency("baton.map", concurrency)
    calls: list[StepCall | _Child] = [StepCall(definition, (item,), {}) for item in items]
    return _fan_out(ex, calls, concurrency)


# -- children ------------------------------------------------------------------------------
class _Child:
    """A ChildCall resolved against the registry (so an unknown workflow fails here)."""

    __slots__ = ("call", "name", "result_name", "wf")

    def __init__(self, ex: Execution, call: ChildCall) -> None:
        self.call = call
        self.wf: WorkflowDef = ex.rt.registry.workflow(call.workflow, call.version)
        self.name = f"baton.child:{self.wf.name}"
        self.result_name = _result_name(self.wf.name)

    def rows(self, ex: Execution, seq: int, now: float) -> tuple[StepRecord, RunRecord, list]:
        """The parent's `child` checkpoint, the child run and its events."""
        parent, call, wf = ex.run, self.call, self.wf
        timeout = call.timeout if call.timeout is not None else wf.timeout
        run_id = new_id()
        run = RunRecord(
            run_id=run_id,
            workflow=wf.name,
            version=wf.version,
            status=RunStatus.ENQUEUED,
            queue=call.queue,
            priority=call.priority,
            available_at=now,
            correlation_id=parent.correlation_id,
            input=call.input,
            created_at=now,
            updated_at=now,
            idempotency_key=f"{parent.run_id}:{seq}",
            timeout=timeout,
            deadline_at=None if timeout is None else now + timeout,
            parent_run_id=parent.run_id,
        )
        step = ex.record(seq, self.name, "child", StepStatus.SUCCEEDED, now, run_id)
        step.finished_at = now
        events = [
            run_event(
                ev.RUN_ENQUEUED,
                ex.rt.source,
                run,
                now,
                {"queue": call.queue, "priority": call.priority, "parent": parent.run_id},
            ),
            ex.event(ev.CHILD_STARTED, now, {"child": run_id, "workflow": wf.name, "seq": seq}),
        ]
        return step, run, events


def _start(ex: Execution, spec: _Child) -> Durable:
    seq, rec = yield from ex.enter("child", spec.name)
    if rec is not None:
        return ChildHandle(serialization.loads(rec.output), spec.wf.name, seq)
    now = ex.rt.clock.now()
    (child_id,) = yield ex.rt.store.start_children(ex.fence, [spec.rows(ex, seq, now)])
    ex.rt.wake()  # committed: let this process's worker claim it at once
    return ChildHandle(child_id, spec.wf.name, seq)


def _result(ex: Execution, handle: ChildHandle) -> Durable:
    name = _result_name(handle.workflow)
    seq, rec = yield from ex.enter("child_result", name)
    if rec is not None and rec.status in (StepStatus.SUCCEEDED, StepStatus.FAILED):
        return _outcome(rec)
    now = ex.rt.clock.now()
    started = rec.started_at if rec is not None else now
    waiting = ex.record(seq, name, "child_result", StepStatus.WAITING, started, handle.id)
    data = {"reason": "child", "seq": seq, "child": handle.id}
    (done,) = yield from _await(ex, [waiting], [handle.id], None, data)
    return _outcome(done)


def _run(ex: Execution, spec: _Child) -> Durable:
    handle = yield from _start(ex, spec)
    return (yield from _result(ex, handle))


def _await(
    ex: Execution,
    waiting: list[StepRecord],
    children: list[str],
    retry_at: float | None,
    data: dict[str, Any],
) -> Durable:
    """Record how each child ended; suspend the run (once) if one has not, or a retry waits."""
    now = ex.rt.clock.now()
    wake = ex.wake_time(retry_at)
    event = ex.event(ev.RUN_WAITING, now, data)
    hold = retry_at is not None
    done = yield ex.rt.store.await_children(
        ex.run.run_id,
        ex.fence,
        ex.run.wakeups,
        waiting,
        children,
        hold,
        wake,
        now,
        _describe_child,
        [event],
    )
    if hold or None in done:
        ex.suspended(wake)
    return done


def _describe_child(run: RunRecord) -> str:
    """The error recorded for a child that did not succeed, as `RunHandle.result` raises it."""
    exc: Exception
    if run.status == RunStatus.CANCELLED:
        exc = RunCancelled(run.run_id)
    else:
        exc = RunFailed(run.run_id, run.status, serialization.loads(run.error or "null"))
    return serialization.dumps(failures.describe(exc, _result_name(run.workflow)))


def _result_name(workflow: str) -> str:
    return f"baton.child_result:{workflow}"


def _outcome(rec: StepRecord) -> Any:
    if rec.status == StepStatus.SUCCEEDED:
        return serialization.loads(rec.output)
    exc = failures.rebuild(serialization.loads(rec.error))
    exc._baton_step = (rec.name, None)  # type: ignore[attr-defined]  # uncaught: the run names it
    raise exc


# -- fan-out / fan-in ----------------------------------------------------------------------
class _Element:
    """One call of a gather: its checkpoint number and where it stands."""

    __slots__ = (
        "call",
        "child_id",
        "deadline",
        "error",
        "plan",
        "retry_at",
        "seq",
        "started_at",
        "state",
        "t0",
        "value",
    )

    def __init__(self, call: StepCall | _Child, seq: int) -> None:
        self.call = call
        self.seq = seq
        # run (to execute), done, failed, retry (a back-off not over), child (not ended), dead
        self.state = "run"
        self.value: Any = None
        self.error: BaseException | None = None
        self.plan: _Plan | None = None
        self.retry_at: float | None = None
        self.child_id: str | None = None
        self.started_at = 0.0
        self.t0 = 0.0
        self.deadline: float | None = None

    def settle(self, rec: StepRecord) -> None:
        try:
            self.value, self.state = _outcome(rec), "done"
        except Exception as exc:
            self.error, self.state = exc, "failed"


def _fan_out(ex: Execution, calls: list[StepCall | _Child], limit: int | None) -> Any:
    if ex.wf.is_async:
        return _gather_async(ex, calls, limit)
    elements = ex.drive(_open(ex, calls))
    _run_sync(ex, [el for el in elements if el.state == "run"], limit)  # type: ignore[union-attr]
    return ex.drive(_close(ex, elements))  # type: ignore[arg-type]


async def _gather_async(ex: Execution, calls: list[StepCall | _Child], limit: int | None) -> Any:
    elements = await ex.drive(_open(ex, calls))  # type: ignore[misc]
    await _run_async(ex, [el for el in elements if el.state == "run"], limit)
    return await ex.drive(_close(ex, elements))  # type: ignore[misc]


def _open(ex: Execution, calls: list[StepCall | _Child]) -> Durable:
    """Number the calls, match them to their checkpoints, and start the new children."""
    width = sum(1 if isinstance(call, StepCall) else 2 for call in calls)
    seq = yield from ex.reserve(width)
    now = ex.rt.clock.now()
    elements: list[_Element] = []
    starts: list[tuple[_Element, tuple]] = []
    for call in calls:
        el = _Element(call, seq)
        elements.append(el)
        if isinstance(call, StepCall):
            plan = ex.plan(call.step, call.args, call.kwargs, seq=seq)
            if plan.kind == "stop":
                yield plan.future  # type: ignore[misc]
                raise plan.exc  # type: ignore[misc]
            _settle_plan(ex, el, plan, now)
            seq += 1
            continue
        _, rec = yield from ex.enter("child", call.name, seq=seq)
        _, result = yield from ex.enter("child_result", call.result_name, seq=seq + 1)
        if result is not None and result.status in (StepStatus.SUCCEEDED, StepStatus.FAILED):
            el.settle(result)
        else:
            el.state = "child"
            el.started_at = result.started_at if result is not None else now
            if rec is not None:
                el.child_id = serialization.loads(rec.output)
            else:
                starts.append((el, call.rows(ex, seq, now)))
        seq += 2
    if starts:
        ids = yield ex.rt.store.start_children(ex.fence, [rows for _, rows in starts])
        for (el, _), child_id in zip(starts, ids, strict=True):
            el.child_id = child_id
        ex.rt.wake()
    return elements


def _settle_plan(ex: Execution, el: _Element, plan: _Plan, now: float) -> None:
    if plan.kind == "cached":
        el.value, el.state = plan.value, "done"
    elif plan.kind == "raise":
        el.error, el.state = plan.exc, "failed"
    else:
        el.plan = plan
        due = _retry_due(ex, el.call.step, ex.recorded.get(el.seq))  # type: ignore[union-attr]
        if due is not None and due > now:  # woken early (a child ended): not time yet
            el.retry_at, el.state = due, "retry"


def _retry_due(ex: Execution, step: StepDef, rec: StepRecord | None) -> float | None:
    """When a step's scheduled retry is due: its back-off is a pure function of the run, the
    checkpoint number and the attempt (see Execution.failed), so it is computed again."""
    if rec is None or rec.status != StepStatus.RETRYING or step.retry is None:
        return None
    if rec.finished_at is None:
        return None
    rng = random.Random(f"{ex.run.run_id}:{rec.seq}:{rec.attempts}")
    return rec.finished_at + step.retry.delay(rec.attempts, rng)


def _close(ex: Execution, elements: list[_Element]) -> Durable:
    """After every step has finished: wait (once) for children and back-offs, or answer."""
    waiting = [el for el in elements if el.state == "child"]
    retries = [el.retry_at for el in elements if el.state == "retry"]
    retry_at = min(retries) if retries else None  # type: ignore[type-var]
    if waiting or retry_at is not None:
        data: dict[str, Any] = {"reason": "gather", "seq": elements[0].seq, "retry_at": retry_at}
        if waiting:
            rows = [
                ex.record(
                    el.seq + 1,
                    el.call.result_name,  # type: ignore[union-attr]
                    "child_result",
                    StepStatus.WAITING,
                    el.started_at,
                    el.child_id,
                )
                for el in waiting
            ]
            ids = [el.child_id for el in waiting]
            data["children"] = ids
            done = yield from _await(ex, rows, ids, retry_at, data)  # type: ignore[arg-type]
            for el, rec in zip(waiting, done, strict=True):
                el.settle(rec)
        else:
            now = ex.rt.clock.now()
            wake = ex.wake_time(retry_at)
            yield ex.rt.store.suspend_run(
                ex.run.run_id,
                ex.fence,
                ex.run.wakeups,
                wake,
                now,
                None,
                [ex.event(ev.RUN_WAITING, now, data)],
            )
            ex.suspended(wake)
    for el in elements:
        if el.state == "failed":
            raise el.error  # type: ignore[misc]
    return [el.value for el in elements]


# -- running the steps of a gather ---------------------------------------------------------
def _succeeded(ex: Execution, el: _Element, result: Any) -> Future:
    fut, raise_ = ex.succeeded(el.call.step, el.plan, result, el.t0)  # type: ignore[union-attr,arg-type]
    if raise_ is None:
        el.value, el.state = result, "done"
    else:  # the result could not be serialized: a failure of the step
        el.error, el.state = raise_, "failed"
    return fut


def _failed(ex: Execution, el: _Element, exc: Exception) -> Future:
    step: StepDef = el.call.step  # type: ignore[union-attr]
    fut, raise_ = ex.failed(step, el.plan, exc, el.t0, hand_back=False)  # type: ignore[arg-type]
    if isinstance(raise_, RetryLater):
        el.retry_at, el.state = raise_.at, "retry"
    elif isinstance(raise_, Unwind):  # retries used up: the run is DEAD already
        el.error, el.state = raise_, "dead"
    else:
        el.error, el.state = raise_, "failed"
    return fut


def _enter_step(el: _Element) -> None:
    step: StepDef = el.call.step  # type: ignore[union-attr]
    in_step.set((step.name, el.seq, el.plan.attempts + 1))  # type: ignore[union-attr]
    bind_contextvars(step=step.name)


def _submit(ex: Execution, pool: ThreadPoolExecutor, el: _Element) -> Future:
    """Start a step of a sync workflow's gather on the step pool, in a context of its own."""
    call: StepCall = el.call  # type: ignore[assignment]
    step = call.step
    el.t0 = time.perf_counter()
    ctx = contextvars.copy_context()
    ctx.run(_enter_step, el)
    if step.is_async:  # on the runtime loop, which applies its timeout
        return pool.submit(ctx.run, ex._invoke_sync, step, call.args, call.kwargs)
    # a sync step's timeout is watched by the waiting thread, which never runs steps itself:
    # a step that waited on the pool for a nested submission could starve a full pool
    el.deadline = None if step.timeout is None else time.monotonic() + step.timeout
    return pool.submit(ctx.run, step.fn, *call.args, **call.kwargs)


def _run_sync(ex: Execution, todo: list[_Element], limit: int | None) -> None:
    if not todo:
        return
    pool = ex.rt.step_pool()
    queue = deque(todo)
    running: dict[Future, _Element] = {}
    writes: list[Future] = []
    while (queue and not _stopping(ex)) or running:
        while queue and not _stopping(ex) and (limit is None or len(running) < limit):
            el = queue.popleft()
            running[_submit(ex, pool, el)] = el
        deadlines = [el.deadline for el in running.values() if el.deadline is not None]
        wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        done, _ = futures.wait(list(running), timeout=wait, return_when=futures.FIRST_COMPLETED)
        finished: list[tuple[_Element, Future]] = []
        for fut in done:
            el = running.pop(fut)
            exc = fut.exception()
            if exc is None:
                finished.append((el, _succeeded(ex, el, fut.result())))
            elif isinstance(exc, Exception):
                finished.append((el, _failed(ex, el, exc)))
            else:
                raise exc
        now = time.monotonic()
        for fut, el in list(running.items()):
            if el.deadline is not None and now >= el.deadline:  # it goes on, unrecorded
                del running[fut]
                step: StepDef = el.call.step  # type: ignore[union-attr]
                timeout = StepTimeout(step.name, step.timeout or 0.0)
                finished.append((el, _failed(ex, el, timeout)))
        for el, write in finished:
            if el.state == "dead":
                ex.wait(write)
                raise el.error  # type: ignore[misc]
            writes.append(write)
    for write in writes:
        ex.wait(write)
    if queue:  # shutting down or stopped: what has run is recorded; the rest runs on replay
        ex.drive(_stop(ex))


async def _run_async(ex: Execution, todo: list[_Element], limit: int | None) -> None:
    if not todo:
        return
    gate = asyncio.Semaphore(limit) if limit is not None else None
    tasks = [asyncio.ensure_future(_element_async(ex, el, gate)) for el in todo]
    try:
        pending: set[asyncio.Future] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                stop = task.result()
                if stop is not None:
                    raise stop
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
    if any(el.state == "run" for el in todo):  # some never started: see _run_sync
        await ex.drive(_stop(ex))  # type: ignore[misc]


async def _element_async(
    ex: Execution, el: _Element, gate: asyncio.Semaphore | None
) -> BaseException | None:
    """Run one step of an async workflow's gather; an Unwind comes back as a value."""
    try:
        if gate is None:
            await _attempt_async(ex, el)
        else:
            async with gate:
                if not _stopping(ex):
                    await _attempt_async(ex, el)
    except Unwind as stop:
        return stop
    return None


async def _attempt_async(ex: Execution, el: _Element) -> None:
    call: StepCall = el.call  # type: ignore[assignment]
    _enter_step(el)  # this task's own context
    el.t0 = time.perf_counter()
    try:
        result = await ex._invoke_async(call.step, call.args, call.kwargs)
    except Exception as exc:
        write = _failed(ex, el, exc)
    else:
        write = _succeeded(ex, el, result)
    finally:
        unbind_contextvars("step")
    await ex.await_(write)
    if el.state == "dead":
        raise el.error  # type: ignore[misc]


def _stopping(ex: Execution) -> bool:
    """Start no more calls: the worker is shutting down, or the run was stopped."""
    return ex.rt.draining or ex.stop_reason in ("cancelled", "deadline", "lost", "shutdown")


def _stop(ex: Execution) -> Durable:
    """Hand the run back (shutdown) or stop (cancelled, timed out), through the usual gate."""
    yield from ex.reserve(0)
    raise Unwind("stopped")


# -- checks --------------------------------------------------------------------------------
def _execution(what: str) -> Execution:
    ex = current.get()
    if ex is None or in_step.get() is not None:
        raise NotInWorkflow(what)
    return ex


def _pending(call: Any, index: int) -> StepCall | ChildCall:
    if isinstance(call, StepCall) and not call.started:
        return call
    if isinstance(call, ChildCall):
        return call
    if isinstance(call, StepCall):
        got = "a step call that was awaited already"
    elif isinstance(call, list | tuple):
        got = f"a {type(call).__name__} {reprlib.repr(call)} (unpack it: gather(*calls))"
    elif asyncio.iscoroutine(call):
        got = f"a coroutine {call!r}"
    else:
        got = f"{type(call).__name__} {reprlib.repr(call)}"
    raise NotADeferredCall("baton.gather", index, got)


def _workflow_name(workflow: str | Callable[..., Any]) -> str:
    if isinstance(workflow, str) and workflow:
        return workflow
    wf = getattr(workflow, "workflow", None)
    if isinstance(wf, WorkflowDef):
        return wf.name
    raise TypeError(f"expected a workflow name or a registered workflow, got {workflow!r}")
