"""One claimed run being executed: the workflow function re-runs from the top, and every step
that already has a checkpoint returns its recorded result instead of running again.

The decisions (what a step call means, what to write after it) live in `Execution`; the sync
driver (a worker thread) and the async driver (a task on the runtime loop) only differ in how
they run the user's function and wait for the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import random
import time
from collections.abc import Coroutine, Generator, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, TypeVar

from baton.core import events as ev
from baton.core import serialization
from baton.core.errors import (
    DivergenceError,
    FenceLost,
    SerializationError,
    StepTimeout,
    StoreError,
    WorkflowTimeout,
)
from baton.core.events import run_event
from baton.engine import failures, loop_handoff, saga
from baton.engine.registry import StepDef, WorkflowDef
from baton.observability import metrics, tracing
from baton.observability.logging import bind_contextvars, get_logger, unbind_contextvars
from baton.store.records import NEVER, TERMINAL, RunRecord, RunStatus, StepRecord, StepStatus

if TYPE_CHECKING:
    from baton.engine.runtime import Runtime

log = get_logger("baton.engine")
T = TypeVar("T")

current: contextvars.ContextVar[Execution | None] = contextvars.ContextVar(
    "baton_execution", default=None
)
# (step name, seq, attempt) while a step's function runs
in_step: contextvars.ContextVar[tuple[str, int, int] | None] = contextvars.ContextVar(
    "baton_in_step", default=None
)

_LOG_KEYS = ("run_id", "correlation_id", "workflow", "trace_id")


class Unwind(BaseException):
    """Stops a workflow function: its run was suspended, finished elsewhere, or lost."""


class RetryLater(Unwind):
    """A step attempt failed and is to run again at `at`; the caller hands the run back."""

    def __init__(self, at: float) -> None:
        super().__init__("retry scheduled")
        self.at = at


class _Plan:
    """What a step call has to do: return a recorded value, raise, stop, or run."""

    __slots__ = (
        "attempts",
        "digest",
        "exc",
        "future",
        "input",
        "kind",
        "seq",
        "span",
        "started_at",
        "value",
    )

    def __init__(self, kind: str, seq: int = 0, **fields: Any) -> None:
        self.kind = kind
        self.seq = seq
        self.value = fields.get("value")
        self.exc: BaseException | None = fields.get("exc")
        self.future: Future | None = fields.get("future")
        self.attempts: int = fields.get("attempts", 0)
        self.started_at: float = fields.get("started_at", 0.0)
        self.digest: str = fields.get("digest", "")
        self.input: str | None = fields.get("input")  # kept when the step has compensate=
        self.span: Any = None  # the attempt's span, while tracing


class Execution:
    def __init__(self, rt: Runtime, run: RunRecord, wf: WorkflowDef, fresh: bool = False) -> None:
        self.rt = rt
        self.run = run
        self.wf = wf
        self.fence = run.fence
        self.seq = 0
        # a run created a moment ago by this process has no checkpoints to read
        steps = [] if fresh else rt.store.load_steps(run.run_id)
        self.recorded = {s.seq: s for s in steps}
        self.stop_reason: str | None = None  # "cancelled", "shutdown" or "deadline"
        self.task: asyncio.Task | None = None
        self.started = time.perf_counter()
        self.trace: tracing.RunTrace | None = None  # this execution's span, while tracing
        self.returning: str | None = None  # the output a success being committed carries
        self.output: str | None = None  # the run's output, once its success is committed
        # an async run alone on its caller's loop blocks that loop on its writes, committing
        # them itself, rather than awaiting them
        self.blocking_waits = False

    # -- decisions -----------------------------------------------------------------------
    def plan(self, step: StepDef, args: tuple, kwargs: dict, seq: int | None = None) -> _Plan:
        """`seq`: a checkpoint number the caller reserved (and gated) already, see `reserve`."""
        if seq is None:
            gate = self._gate()
            if gate is not None:
                return gate
            self.seq += 1
            seq = self.seq
        try:
            digest = serialization.args_hash(args, kwargs)
            kept = saga.kept_input(step, args, kwargs)
        except SerializationError as exc:
            return _Plan("raise", seq, exc=exc)
        rec = self.recorded.get(seq)
        if rec is None:
            now = self.rt.clock.now()
            return _Plan("run", seq, attempts=0, started_at=now, digest=digest, input=kept)
        if rec.kind != "step" or rec.name != step.name or rec.args_hash != digest:
            recorded = f"{rec.name!r}" + ("" if rec.name != step.name else " with other arguments")
            err = DivergenceError(self.run.run_id, seq, recorded, repr(step.name))
            return self._stop_failed(err, step.name)
        if rec.status == StepStatus.SUCCEEDED:
            return _Plan("cached", seq, value=serialization.loads(rec.output))
        if rec.status == StepStatus.FAILED:
            return _Plan("raise", seq, exc=failures.rebuild(serialization.loads(rec.error)))
        return _Plan(
            "run", seq, attempts=rec.attempts, started_at=rec.started_at, digest=digest, input=kept
        )

    def succeeded(self, step: StepDef, plan: _Plan, result: Any, t0: float) -> tuple[Future, Any]:
        try:
            output = serialization.dumps(result, f"output of step {step.name!r}")
        except SerializationError as exc:
            return self.failed(step, plan, exc, t0)
        elapsed = time.perf_counter() - t0
        metrics.step_attempt(self.wf.name, step.name, elapsed)
        if self.trace is not None:
            self._end_step(step, plan, t0)
        now = self.rt.clock.now()
        rec = StepRecord(
            self.run.run_id,
            plan.seq,
            step.name,
            plan.digest,
            StepStatus.SUCCEEDED,
            plan.attempts + 1,
            plan.started_at,
            now,
            output,
            None,
            self.rt.worker_id,
        )
        rec.input = plan.input
        event = run_event(
            ev.STEP_COMPLETED,
            self.rt.source,
            self.run,
            now,
            {
                "step": step.name,
                "seq": plan.seq,
                "attempt": plan.attempts + 1,
                "duration_ms": round(elapsed * 1000, 3),
            },
        )
        return self.rt.store.save_step(self.fence, rec, [event]), None

    def failed(
        self, step: StepDef, plan: _Plan, exc: BaseException, t0: float, hand_back: bool = True
    ) -> tuple[Future, BaseException]:
        """Record a failed attempt; return the write to wait for and what to raise after it.

        With `hand_back=False` a scheduled retry keeps the run (a gather hands it back once,
        after all its calls) and `RetryLater` says when the attempt is due."""
        attempt = plan.attempts + 1
        metrics.step_attempt(self.wf.name, step.name, time.perf_counter() - t0)
        now = self.rt.clock.now()
        doc = failures.describe(exc, step.name, attempt)
        rec = StepRecord(
            self.run.run_id,
            plan.seq,
            step.name,
            plan.digest,
            StepStatus.RETRYING,
            attempt,
            plan.started_at,
            now,
            None,
            serialization.dumps(doc),
            self.rt.worker_id,
        )
        data = {
            "step": step.name,
            "seq": plan.seq,
            "attempt": attempt,
            "error": {"type": doc["type"], "message": doc["message"]},
        }
        policy = step.retry
        retryable = (
            policy is not None
            and policy.is_retryable(exc)
            and not isinstance(exc, SerializationError)
        )
        if retryable and attempt < policy.max_attempts:  # type: ignore[union-attr]
            rng = random.Random(f"{self.run.run_id}:{plan.seq}:{attempt}")
            delay = policy.delay(attempt, rng)  # type: ignore[union-attr]
            data["delay"] = delay
            metrics.step_retry(self.wf.name, step.name)
            event = run_event(ev.STEP_RETRYING, self.rt.source, self.run, now, data)
            log.info(
                "step retrying", step=step.name, attempt=attempt, delay=delay, error=doc["message"]
            )
            if self.trace is not None:  # after the log line, which carries its span id
                self._end_step(step, plan, t0, exc, delay)
            if not hand_back:
                return self.rt.store.save_step(self.fence, rec, [event]), RetryLater(now + delay)
            fut = self.rt.store.retry_step_later(self.fence, rec, now + delay, [event])
            self.rt.due_at(now + delay)
            return fut, Unwind("retry scheduled")
        rec.status = StepStatus.FAILED
        step_failed = run_event(ev.STEP_FAILED, self.rt.source, self.run, now, data)
        if retryable:  # retries exhausted: the run goes to the dead-letter queue
            log.warning("run dead", step=step.name, attempts=attempt, error=doc["message"])
            if self.trace is not None:
                self._end_step(step, plan, t0, exc)
                self.trace.failed(description=f"step {step.name!r} used up {attempt} attempts")
            dead = run_event(
                ev.RUN_DEAD,
                self.rt.source,
                self.run,
                now,
                {"step": step.name, "attempts": attempt, "error": data["error"]},
            )
            # or COMPENSATING, when it has completed steps to undo
            fut = saga.end(self, RunStatus.DEAD, doc, [step_failed, dead], [step_failed], rec)
            return self._ends(fut), Unwind("dead")
        if self.trace is not None:
            self._end_step(step, plan, t0, exc)
        _tag(exc, step.name, attempt)
        return self.rt.store.save_step(self.fence, rec, [step_failed]), exc

    def completed(self, result: Any) -> Future:
        now = self.rt.clock.now()
        leftover = [s for seq, s in sorted(self.recorded.items()) if seq > self.seq]
        if leftover:
            first = leftover[0]
            err = DivergenceError(
                self.run.run_id, first.seq, repr(first.name), "nothing (the workflow returned)"
            )
            return self._finish_failed(err, None, now)
        try:
            output = serialization.dumps(result, f"output of workflow {self.wf.name!r}")
        except SerializationError as exc:
            return self._finish_failed(exc, None, now)
        self.returning = output
        ms = round((time.perf_counter() - self.started) * 1000, 3)
        event = run_event(ev.RUN_SUCCEEDED, self.rt.source, self.run, now, {"duration_ms": ms})
        log.info("run succeeded", duration_ms=ms)
        fut = self.rt.store.finish_run(
            self.run.run_id, self.fence, RunStatus.SUCCEEDED, output, None, now, [event]
        )
        return self._ends(fut, RunStatus.SUCCEEDED)

    def crashed(self, exc: BaseException) -> Future:
        step, attempts = getattr(exc, "_baton_step", (None, None))
        if self.trace is not None:
            self.trace.failed(exc)
        return self._ends(saga.fail(self, exc, step, attempts))  # FAILED, or COMPENSATING

    def expire(self) -> Future:
        """The deadline passed while the run was executing here."""
        self.stop_reason = "deadline"
        return self._finish_failed(
            WorkflowTimeout(self.run.run_id, self.run.timeout), None, self.rt.clock.now()
        )

    # -- waiting -------------------------------------------------------------------------
    def wait(self, fut: Future) -> None:
        try:
            fut.result()
        except (FenceLost, StoreError) as exc:
            self._lost(exc)

    async def await_(self, fut: Future) -> None:
        if self.blocking_waits:
            self.wait(fut)
            return
        try:
            await loop_handoff.awaitable(fut, asyncio.get_running_loop())
        except (FenceLost, StoreError) as exc:
            self._lost(exc)

    # -- drivers -------------------------------------------------------------------------
    def call_sync(self, step: StepDef, args: tuple, kwargs: dict) -> Any:
        plan = self.plan(step, args, kwargs)
        if plan.kind != "run":
            return self._short_circuit_sync(plan)
        t0 = time.perf_counter()
        token = in_step.set((step.name, plan.seq, plan.attempts + 1))
        bind_contextvars(step=step.name)
        scope = self._open_step(step, plan) if self.trace is not None else None
        try:
            result = self._invoke_sync(step, args, kwargs)
        except Exception as exc:
            fut, raise_ = self.failed(step, plan, exc, t0)
            self.wait(fut)
            if raise_ is exc:
                raise
            raise raise_ from None
        finally:
            in_step.reset(token)
            unbind_contextvars("step")
            if scope is not None:
                tracing.detach(scope)
        fut, raise_ = self.succeeded(step, plan, result, t0)
        self.wait(fut)
        if raise_ is not None:
            raise raise_
        return result

    async def call_async(self, step: StepDef, args: tuple, kwargs: dict) -> Any:
        plan = self.plan(step, args, kwargs)
        if plan.kind != "run":
            if plan.kind == "stop":
                await self.await_(plan.future)  # type: ignore[arg-type]
            return self._short_circuit_sync(plan, waited=True)
        t0 = time.perf_counter()
        token = in_step.set((step.name, plan.seq, plan.attempts + 1))
        bind_contextvars(step=step.name)
        scope = self._open_step(step, plan) if self.trace is not None else None
        try:
            result = await self._invoke_async(step, args, kwargs)
        except Exception as exc:
            fut, raise_ = self.failed(step, plan, exc, t0)
            await self.await_(fut)
            if raise_ is exc:
                raise
            raise raise_ from None
        finally:
            in_step.reset(token)
            unbind_contextvars("step")
            if scope is not None:
                tracing.detach(scope)
        fut, raise_ = self.succeeded(step, plan, result, t0)
        await self.await_(fut)
        if raise_ is not None:
            raise raise_
        return result

    def run_sync(self) -> None:
        token = current.set(self)
        bind_contextvars(**self._log_context())
        try:
            self.trace = tracing.start_run(self.run, self.rt.store.get_run)
            if self.run.status == RunStatus.COMPENSATING:  # undo its steps, not run it
                with self._compensation():
                    self._drive_sync(saga.compensate(self))
                return
            args, kwargs = self._input()
            try:
                result = self.wf.fn(*args, **kwargs)
            except Unwind:
                return
            except Exception as exc:
                self.wait(self.crashed(exc))
                return
            self.wait(self.completed(result))
            self.output = self.returning
        except Unwind:
            return
        finally:
            if self.trace is not None:
                self.trace.close(self.stop_reason)
            unbind_contextvars(*_LOG_KEYS)
            current.reset(token)
            self.rt.finished(self)

    async def run_async(self) -> None:
        current.set(self)
        bind_contextvars(**self._log_context())
        try:
            self.trace = tracing.start_run(self.run, self.rt.store.get_run)
            if self.run.status == RunStatus.COMPENSATING:  # undo its steps, not run it
                with self._compensation():
                    await self._drive_async(saga.compensate(self))
                return
            args, kwargs = self._input()
            try:
                result = await self.wf.fn(*args, **kwargs)
            except Unwind:
                return
            except Exception as exc:
                await self.await_(self.crashed(exc))
                return
            await self.await_(self.completed(result))
            self.output = self.returning
        except (Unwind, asyncio.CancelledError):
            return
        finally:
            if self.trace is not None:
                self.trace.close(self.stop_reason)
            self.rt.finished(self)

    # -- durable calls other than steps (waits, children, markers) -------------------------
    def drive(self, logic: Generator[Future, Any, T]) -> T | Coroutine[Any, Any, T]:
        """Run a generator of store writes: blocking in a sync workflow, awaitable in an
        async one. Each yielded write's result is sent back in; its error is thrown in."""
        if self.wf.is_async:
            return self._drive_async(logic)
        return self._drive_sync(logic)

    def _drive_sync(self, logic: Generator[Future, Any, T]) -> T:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                fut = logic.throw(error) if error is not None else logic.send(value)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            try:
                value = fut.result()
            except (FenceLost, StoreError) as exc:
                logic.close()
                self._lost(exc)
            except Exception as exc:
                error = exc

    async def _drive_async(self, logic: Generator[Future, Any, T]) -> T:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                fut = logic.throw(error) if error is not None else logic.send(value)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            try:
                value = fut.result() if self.blocking_waits else await asyncio.wrap_future(fut)
            except (FenceLost, StoreError) as exc:
                logic.close()
                self._lost(exc)
            except Exception as exc:
                error = exc

    def enter(
        self, kind: str, name: str, seq: int | None = None
    ) -> Generator[Future, Any, tuple[int, StepRecord | None]]:
        """Take the next checkpoint number for a durable call (or `seq`, taken with `reserve`);
        check it against the record."""
        if seq is None:
            seq = yield from self.reserve(1)
        rec = self.recorded.get(seq)
        if rec is not None and (rec.kind != kind or rec.name != name):
            err = DivergenceError(self.run.run_id, seq, repr(rec.name), repr(name))
            yield self._finish_failed(err, name, self.rt.clock.now())
            raise Unwind("diverged")
        return seq, rec

    def reserve(self, count: int) -> Generator[Future, Any, int]:
        """Stop here if the run must stop; else take the next `count` checkpoint numbers at
        once and return the first (a gather numbers its calls before running any)."""
        gate = self._gate()
        if gate is not None:
            if gate.future is not None:
                yield gate.future
            raise gate.exc  # type: ignore[misc]
        first = self.seq + 1
        self.seq += count
        return first

    def record(
        self, seq: int, name: str, kind: str, status: str, started_at: float, output: Any
    ) -> StepRecord:
        """A checkpoint row for a durable call that is not a step."""
        return StepRecord(
            self.run.run_id,
            seq,
            name,
            "",
            status,
            1,
            started_at,
            None,
            serialization.dumps(output),
            None,
            self.rt.worker_id,
            kind,
        )

    def event(self, type: str, now: float, data: dict[str, Any]) -> ev.CloudEvent:
        return run_event(type, self.rt.source, self.run, now, data)

    def wake_time(self, timer: float | None) -> float:
        """When a waiting run must look again: its timer, or its deadline if sooner."""
        wake = NEVER if timer is None else timer
        deadline = self.run.deadline_at
        return wake if deadline is None else min(wake, deadline)

    def suspend(
        self, timer: float | None, step: StepRecord, data: dict[str, Any]
    ) -> Generator[Future, Any, None]:
        """Suspend the run until `timer` (or a wake-up) with checkpoint `step`, and stop."""
        now = self.rt.clock.now()
        wake = self.wake_time(timer)
        event = self.event(ev.RUN_WAITING, now, data)
        yield self.rt.store.suspend_run(
            self.run.run_id, self.fence, self.run.wakeups, wake, now, step, [event]
        )
        self.suspended(wake)

    def suspended(self, wake: float) -> None:
        """The run is WAITING in the store: make sure this worker looks again at `wake`."""
        self.stop_reason = "waiting"
        if wake < NEVER:
            self.rt.due_at(wake)
        raise Unwind("waiting")

    # -- helpers -------------------------------------------------------------------------
    def _invoke_sync(self, step: StepDef, args: tuple, kwargs: dict) -> Any:
        if step.is_async:
            return self.rt.run_coroutine(_with_timeout(step, step.fn(*args, **kwargs)))
        if step.timeout is None:
            return step.fn(*args, **kwargs)
        ctx = contextvars.copy_context()
        fut = self.rt.step_pool().submit(ctx.run, step.fn, *args, **kwargs)
        try:
            return fut.result(step.timeout)
        except FutureTimeout:
            raise StepTimeout(step.name, step.timeout) from None

    async def _invoke_async(self, step: StepDef, args: tuple, kwargs: dict) -> Any:
        if step.is_async:
            return await _with_timeout(step, step.fn(*args, **kwargs))
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        call = loop.run_in_executor(self.rt.step_pool(), lambda: ctx.run(step.fn, *args, **kwargs))
        return await _with_timeout(step, call)

    def _short_circuit_sync(self, plan: _Plan, waited: bool = False) -> Any:
        if plan.kind == "cached":
            return plan.value
        if plan.kind == "stop" and not waited:
            self.wait(plan.future)  # type: ignore[arg-type]
        raise plan.exc  # type: ignore[misc]

    def _gate(self) -> _Plan | None:
        """Before each step: stop here if the run was cancelled, timed out, or is draining."""
        reason = self.stop_reason
        if reason in ("cancelled", "deadline", "lost"):
            return _Plan("stop", future=_done(), exc=Unwind(reason))
        deadline = self.run.deadline_at
        if deadline is not None and self.rt.clock.now() >= deadline:
            return self._stop(self.expire())
        if reason == "shutdown" or self.rt.draining:
            now = self.rt.clock.now()
            event = run_event(
                ev.RUN_SUSPENDED,
                self.rt.source,
                self.run,
                now,
                {"reason": "shutdown", "next_step": self.seq + 1},
            )
            return self._stop(self.rt.store.release_run(self.run.run_id, self.fence, now, [event]))
        return None

    def _stop(self, fut: Future) -> _Plan:
        return _Plan("stop", future=fut, exc=Unwind("stopped"))

    def _stop_failed(self, exc: BaseException, step: str | None) -> _Plan:
        return self._stop(self._finish_failed(exc, step, self.rt.clock.now()))

    def _finish_failed(
        self, exc: BaseException, step: str | None, now: float, attempts: int | None = None
    ) -> Future:
        doc = failures.describe(exc, step, attempts)
        log.warning("run failed", error_type=doc["type"], error=doc["message"])
        event = run_event(
            ev.RUN_FAILED,
            self.rt.source,
            self.run,
            now,
            {"step": step, "error": {"type": doc["type"], "message": doc["message"]}},
        )
        fut = self.rt.store.finish_run(
            self.run.run_id,
            self.fence,
            RunStatus.FAILED,
            None,
            serialization.dumps(doc),
            now,
            [event],
        )
        return self._ends(fut, RunStatus.FAILED)

    def _ends(self, fut: Future, status: str | None = None) -> Future:
        """Count the run's end once `fut` commits: as `status`, or as the status it returns
        (a failure that turned the run COMPENSATING is not an end yet)."""
        fut.add_done_callback(functools.partial(_count_end, self.wf.name, status))
        return fut

    def _open_step(self, step: StepDef, plan: _Plan) -> object:
        """Open the attempt's span, current while the step runs; returns what to detach."""
        plan.span, scope = self.trace.open_step(step.name, plan.seq, plan.attempts + 1)  # type: ignore[union-attr]
        return scope

    @contextlib.contextmanager
    def _compensation(self) -> Iterator[None]:
        """Count how a compensation phase ends: COMPENSATED, or DEAD (a compensation failed
        for good: saga raises Unwind("dead") once that is committed)."""
        try:
            yield
        except Unwind as stop:
            if stop.args == ("dead",):
                metrics.run_finished(self.wf.name, RunStatus.DEAD)
                if self.trace is not None:
                    self.trace.failed(description="a compensation failed for good")
            raise
        metrics.run_finished(self.wf.name, RunStatus.COMPENSATED)

    def _end_step(
        self,
        step: StepDef,
        plan: _Plan,
        t0: float,
        exc: BaseException | None = None,
        delay: float | None = None,
    ) -> None:
        """End the attempt's span; an attempt that ran without one (a call of baton.gather)
        gets one now, backdated to when it began."""
        trace = self.trace
        assert trace is not None
        span = plan.span
        if span is None:
            span = trace.step_span(step.name, plan.seq, plan.attempts + 1, t0)
        trace.end_step(span, exc, delay)

    def _lost(self, exc: BaseException) -> None:
        if self.stop_reason is None:
            self.stop_reason = "lost"
        if isinstance(exc, StoreError) and not isinstance(exc, FenceLost):
            log.error("store write failed; the run is handed back", error=str(exc))
            self.rt.orphaned(self)
        raise Unwind(str(exc)) from None

    def _input(self) -> tuple[list, dict]:
        doc = serialization.loads(self.run.input)
        return doc.get("args", []), doc.get("kwargs", {})

    def _log_context(self) -> dict[str, str]:
        return {
            "run_id": self.run.run_id,
            "correlation_id": self.run.correlation_id,
            "workflow": self.run.workflow,
            # the run's trace, also when no tracer records spans: logs and traces join up
            "trace_id": tracing.run_traceparent(self.run).split("-")[1],
        }


def _tag(exc: BaseException, step: str, attempts: int) -> None:
    """Remember on the exception which step raised it, for the run's error record."""
    try:
        if not hasattr(exc, "_baton_step"):
            exc._baton_step = (step, attempts)  # type: ignore[attr-defined]
    except AttributeError:
        pass


def _count_end(workflow: str, status: str | None, fut: Future) -> None:
    if fut.cancelled() or fut.exception() is not None:
        return
    ended = status if status is not None else fut.result()
    if ended in TERMINAL:
        metrics.run_finished(workflow, ended)


def _done() -> Future:
    fut: Future = Future()
    fut.set_result(None)
    return fut


async def _with_timeout(step: StepDef, aw: Any) -> Any:
    if step.timeout is None:
        return await aw
    try:
        return await asyncio.wait_for(aw, step.timeout)
    except TimeoutError:
        raise StepTimeout(step.name, step.timeout) from None
