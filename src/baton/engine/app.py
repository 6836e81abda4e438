"""`baton.App`: register workflows and steps, start runs, and host a worker."""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import functools
import os
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar, overload

from baton.core import events as ev
from baton.core import serialization
from baton.core.clock import Clock, RealClock
from baton.core.errors import (
    BlockingOnWorkerLoop,
    DefinitionError,
    ScheduleError,
    UnknownWorkflow,
)
from baton.core.events import run_event
from baton.core.ids import new_id
from baton.core.retry import Retry
from baton.engine import compose, forks, liveness, saga
from baton.engine.compose import StepCall
from baton.engine.execution import current, in_step
from baton.engine.flags import Flags
from baton.engine.handles import RunHandle
from baton.engine.registry import Registry, StepDef, WorkflowDef, is_async
from baton.engine.runtime import Runtime, RuntimeOptions
from baton.engine.scheduler import Schedule, Schedules, declare, run_handles
from baton.engine.versioning import ReplayResult, replay_check
from baton.engine.waits import approval_event
from baton.observability import metrics, tracing
from baton.observability.logging import get_logger
from baton.store import open_store
from baton.store.flow import Queue, check_start_options
from baton.store.protocol import Store
from baton.store.records import (
    TERMINAL,
    ApprovalRecord,
    EventRecord,
    RunRecord,
    RunStatus,
    ScheduleRecord,
    StepRecord,
)

F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("baton.app")
# set while `App.run` starts a run: the caller executes a run it can take itself
_here: contextvars.ContextVar[bool] = contextvars.ContextVar("baton_run_here", default=False)


class App:
    """One Baton application: a registry of workflows and steps bound to a store.

    The store is opened at once (so a bad location fails here). A worker starts in this
    process on the first `start()` / `run()` or on `launch()`, unless `worker=False`.
    """

    def __init__(
        self,
        store: str | os.PathLike[str] | Store | None = None,
        *,
        concurrency: int = 64,
        queues: Iterable[str] | None = None,
        clock: Clock | None = None,
        worker: bool = True,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 2.0,
        worker_ttl: float = 30.0,
        synchronous: str | None = None,
        payload_threshold: int | None = None,
    ) -> None:
        # store options apply when the App opens the store; a Store object keeps its own.
        # Unset, each backend's default holds (SQLite: synchronous=FULL; payloads: 64 KiB)
        given = {"synchronous": synchronous, "payload_threshold": payload_threshold}
        options = (
            {k: v for k, v in given.items() if v is not None}
            if isinstance(store, str | os.PathLike | None)
            else {}
        )
        self.store: Store = open_store(store, **options)  # type: ignore[arg-type]
        self.clock: Clock = clock or RealClock()
        self.registry = Registry()
        self.source = f"baton://{liveness.hostname()}/{os.getpid()}"
        # feature flags in the store: app.flags.get/set/delete/all, baton.flag() in a run
        self.flags = Flags(self.store, self.clock, self.source, self.registry)
        self._options = RuntimeOptions(
            concurrency=concurrency,
            queues=list(queues) if queues else None,
            poll_interval=poll_interval,
            heartbeat_interval=heartbeat_interval,
            worker_ttl=worker_ttl,
        )
        self._auto_worker = worker
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()
        self._waiters: dict[str, list[threading.Event]] = {}
        self._closed = False
        self._schedules = Schedules(self)

    # -- definitions ---------------------------------------------------------------------
    @overload
    def workflow(self, fn: F) -> F: ...
    @overload
    def workflow(
        self, *, name: str | None = None, version: str = "1", timeout: float | None = None
    ) -> Callable[[F], F]: ...

    def workflow(self, fn=None, *, name=None, version="1", timeout=None):  # type: ignore[no-untyped-def]
        """Register a workflow (sync or `async def`). Calling it starts a run and waits."""

        def register(f: F) -> F:
            wf = WorkflowDef(name or f.__name__, str(version), f, is_async(f), timeout)
            self.registry.add_workflow(wf)

            @functools.wraps(f)
            def durable(*args: Any, **kwargs: Any) -> Any:
                return self.run(wf.name, *args, version=wf.version, **kwargs)

            durable.workflow = wf  # type: ignore[attr-defined]
            durable.start = functools.partial(self.start, wf.name, version=wf.version)  # type: ignore[attr-defined]
            return durable  # type: ignore[return-value]

        return register(fn) if fn is not None else register

    @overload
    def step(self, fn: F) -> F: ...
    @overload
    def step(
        self,
        *,
        name: str | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
        compensate: str | Callable[..., Any] | None = None,
    ) -> Callable[[F], F]: ...

    def step(self, fn=None, *, name=None, retry=None, timeout=None, compensate=None):  # type: ignore[no-untyped-def]
        """Register a step. Inside a run it is checkpointed; elsewhere it is a plain call.

        In an `async def` workflow every step is awaited (sync steps run in a thread pool).
        `compensate` names the step (or is the step function) that undoes this one if the
        run fails for good or is cancelled; it is called with this step's arguments.
        """
        compensate = saga.declared(compensate)
        if retry is not None and not isinstance(retry, Retry):
            raise DefinitionError(f"retry= takes a baton.Retry, got {type(retry).__name__}")
        if timeout is not None and timeout <= 0:
            raise DefinitionError(f"timeout= must be > 0 seconds, got {timeout}")

        def register(f: F) -> F:
            step = StepDef(name or f.__qualname__, f, is_async(f), retry, timeout, compensate)
            self.registry.add_step(step)

            @functools.wraps(f)
            def checkpointed(*args: Any, **kwargs: Any) -> Any:
                ex = current.get()
                if ex is None or in_step.get():
                    return f(*args, **kwargs)
                if ex.wf.is_async:  # awaitable, and a pending call baton.gather takes
                    return StepCall(step, args, kwargs, ex)
                return ex.call_sync(step, args, kwargs)

            checkpointed.step = step  # type: ignore[attr-defined]
            checkpointed.defer = compose.defer(step)  # type: ignore[attr-defined]
            return checkpointed  # type: ignore[return-value]

        return register(fn) if fn is not None else register

    # -- runs ----------------------------------------------------------------------------
    def start(
        self,
        workflow: str | Callable[..., Any],
        *args: Any,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        priority: int = 0,
        queue: str = "default",
        timeout: float | None = None,
        version: str | None = None,
        concurrency_key: str | None = None,
        key_limit: int | None = None,
        debounce_key: str | None = None,
        debounce: float | None = None,
        **kwargs: Any,
    ) -> RunHandle:
        """Durably record a new run and return its handle (after the commit).

        Flow control (docs/flow-control.md): at most `key_limit` runs (else the queue's
        `key_concurrency`, else 1) with the same `concurrency_key` run at once; with
        `debounce_key`, the run waits `debounce` seconds, and a later start with the same key
        before it begins replaces its input and pushes it back instead of adding a run.
        """
        pending = self._begin_start(
            workflow,
            args,
            kwargs,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
            priority=priority,
            queue=queue,
            timeout=timeout,
            version=version,
            concurrency_key=concurrency_key,
            key_limit=key_limit,
            debounce_key=debounce_key,
            debounce=debounce,
        )
        try:
            outcome = pending.future.result()
        except BaseException:
            pending.abandon()
            raise
        return pending.finish(outcome)

    async def start_async(
        self,
        workflow: str | Callable[..., Any],
        *args: Any,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        priority: int = 0,
        queue: str = "default",
        timeout: float | None = None,
        version: str | None = None,
        concurrency_key: str | None = None,
        key_limit: int | None = None,
        debounce_key: str | None = None,
        debounce: float | None = None,
        **kwargs: Any,
    ) -> RunHandle:
        """`start` for async callers: awaits the commit without blocking the event loop."""
        pending = self._begin_start(
            workflow,
            args,
            kwargs,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
            priority=priority,
            queue=queue,
            timeout=timeout,
            version=version,
            concurrency_key=concurrency_key,
            key_limit=key_limit,
            debounce_key=debounce_key,
            debounce=debounce,
        )
        try:
            outcome = await asyncio.wrap_future(pending.future)
        except BaseException:
            pending.abandon()
            raise
        return pending.finish(outcome)

    def _begin_start(
        self,
        workflow: str | Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        idempotency_key: str | None,
        correlation_id: str | None,
        priority: int,
        queue: str,
        timeout: float | None,
        version: str | None,
        concurrency_key: str | None,
        key_limit: int | None,
        debounce_key: str | None,
        debounce: float | None,
    ) -> _PendingStart:
        """Check and build a new run and submit its insert; the caller waits for the commit."""
        wf = self.registry.workflow(_workflow_name(workflow), version)
        check_start_options(wf.name, concurrency_key, key_limit, debounce_key, debounce)
        payload = serialization.dumps({"args": list(args), "kwargs": kwargs}, "workflow input")
        if not isinstance(priority, int):
            raise TypeError(f"priority must be an int, got {type(priority).__name__}")
        timeout = timeout if timeout is not None else wf.timeout
        now = self.clock.now()
        run_id = new_id()
        run = RunRecord(
            run_id=run_id,
            workflow=wf.name,
            version=wf.version,
            status=RunStatus.ENQUEUED,
            queue=queue,
            priority=priority,
            available_at=now if debounce is None else now + debounce,
            correlation_id=correlation_id or run_id,
            input=payload,
            created_at=now,
            updated_at=now,
            idempotency_key=idempotency_key,
            timeout=timeout,
            deadline_at=None if timeout is None else now + timeout,
            concurrency_key=concurrency_key,
            key_limit=key_limit,
            debounce_key=debounce_key,
            traceparent=tracing.new_traceparent(),  # its executions' spans join this trace
        )
        events = [
            run_event(
                ev.RUN_ENQUEUED, self.source, run, now, {"queue": queue, "priority": priority}
            )
        ]
        rt = self._ensure_runtime()
        # a run with a key is never claimed here: only a claim may admit it
        direct = (
            rt is not None
            and concurrency_key is None
            and debounce_key is None
            and self._serves_queue(queue)
            and rt.try_reserve()
        )
        if direct:  # claim it in the same commit: no poll, no second write
            assert rt is not None
            run.status, run.owner, run.fence, run.attempt = RunStatus.RUNNING, rt.worker_id, 1, 1
            run.started_at = now
            events.append(
                run_event(
                    ev.RUN_STARTED, self.source, run, now, {"attempt": 1, "worker": rt.worker_id}
                )
            )
        try:
            if debounce_key is not None:
                future = self.store.debounce_run(run, events, self.source)
            else:
                future = self.store.create_run(run, events)
        except BaseException:
            if direct:
                rt.unreserve()  # type: ignore[union-attr]  # nothing was submitted
            raise
        return _PendingStart(self, rt if direct else None, run, future, now)

    def run(self, workflow: str | Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Start a run and wait for its result. A run that this process takes at once
        executes in the calling thread, which waits anyway (an async one on that thread's
        own event loop, unless a loop runs there already)."""
        self._refuse_on_worker_loop("app.run()")  # before anything is started
        token = _here.set(True)
        try:
            handle = self.start(workflow, *args, **kwargs)
        finally:
            _here.reset(token)
        ex = handle.execution
        if ex is not None:
            handle.execution = None
            ex.rt.execute_here(ex)
            if ex.output is not None:  # committed: no need to read it back
                return serialization.loads(ex.output)
        return handle.result()

    def handle(self, run_id: str) -> RunHandle:
        return RunHandle(self, run_id)

    def get_run(self, run_id: str) -> RunRecord | None:
        return self.store.get_run(run_id)

    def runs(
        self,
        status: str | Iterable[str] | None = None,
        workflow: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        statuses = [status] if isinstance(status, str) else status
        return self.store.list_runs(_statuses(statuses), workflow, limit)

    def dead_letters(self, limit: int = 100) -> list[RunRecord]:
        return self.store.list_runs([RunStatus.DEAD], None, limit)

    def steps(self, run_id: str) -> list[StepRecord]:
        return self.store.load_steps(run_id)

    def events(
        self,
        run_id: str | None = None,
        type: str | None = None,
        correlation_id: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[EventRecord]:
        return self.store.list_events(run_id, type, correlation_id, after, limit)

    def cancel(self, run_id: str) -> RunRecord:
        """Cancel a run that has not ended. A step already running finishes, unrecorded.

        A run with completed steps that declare compensations turns COMPENSATING instead, and
        a worker undoes them; a COMPENSATING run cannot be cancelled (InvalidState)."""
        now = self.clock.now()
        run = self._must_get(run_id)
        event = run_event(ev.RUN_CANCELLED, self.source, run, now, {"previous": run.status})
        cancelled = saga.cancel(self.store, self.source, run, now, event).result()
        if cancelled.status in TERMINAL:
            metrics.run_finished(cancelled.workflow, cancelled.status)
        if self._runtime is not None:
            self._runtime.cancel_local(run_id, cancelled.fence)
        if cancelled.status == RunStatus.COMPENSATING:
            self._wake_worker()
        if run.parent_run_id is not None:  # its parent may wait for it: let a worker look now
            self._wake_worker()
        self._notify(run_id)
        return cancelled

    def redrive(self, run_id: str) -> RunHandle:
        """Send a DEAD or FAILED run back to its queue; it resumes at the failed step.

        A run that went DEAD during its compensation resumes the compensation instead: the
        failed compensation runs again with fresh attempts, completed ones do not."""
        now = self.clock.now()
        run = self._must_get(run_id)
        event = run_event(ev.RUN_REDRIVEN, self.source, run, now, {"previous": run.status})
        if self.store.redrive_compensation(run_id, now, [event]).result() is None:
            self.store.redrive_run(run_id, now, [event]).result()
        rt = self._ensure_runtime()
        if rt is not None:
            rt.wake()
        return RunHandle(self, run_id)

    def fork(self, run_id: str, from_step: int, input: dict[str, Any] | None = None) -> RunHandle:
        """Start a new run of `run_id`'s workflow, same version, that reuses the source's
        successful steps numbered below `from_step` (1-based) and executes from there on.

        `input` is `{"args": [...], "kwargs": {...}}`; None reuses the source's input.
        Raises RunNotFound, UnknownWorkflow (a version this App does not serve) or
        StepNotFound (from_step outside 1 .. the source's highest step + 1); nothing is
        written then.
        """
        return forks.fork(self, run_id, from_step, input)

    # -- versioning ----------------------------------------------------------------------
    def replay_check(
        self,
        run_ids: Iterable[str] | None = None,
        workflow: str | None = None,
        status: str | Iterable[str] | None = None,
        limit: int = 1000,
    ) -> list[ReplayResult]:
        """Replay stored runs' checkpoints against the code registered here, running no step
        and writing nothing; each result names the first divergence, if any."""
        if run_ids is not None:
            runs = [self._must_get(run_id) for run_id in run_ids]
        else:
            statuses = [status] if isinstance(status, str) else status
            runs = self.store.list_runs(_statuses(statuses), workflow, limit)
        return replay_check(self.store, self.registry, runs)

    # -- signals and approvals -----------------------------------------------------------
    def signal(self, run_id: str, name: str, payload: Any = None) -> str:
        """Send signal `name` to a run. It is kept until the run waits for it, then consumed
        once. Returns the signal's id. Unknown or finished runs are refused."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a signal needs a non-empty name, got {name!r}")
        body = serialization.dumps(payload, f"payload of signal {name!r}")
        now = self.clock.now()
        run = self._must_get(run_id)
        event = run_event(ev.SIGNAL_SENT, self.source, run, now, {"name": name})
        signal_id = self.store.send_signal(run_id, name, body, now, [event]).result()
        self._wake_worker()
        return signal_id

    def approvals(
        self, status: str | None = "PENDING", run_id: str | None = None, limit: int = 100
    ) -> list[ApprovalRecord]:
        """Approvals (pending ones by default; status=None for all), oldest first."""
        if status is not None:
            status = status.upper()
            if status not in _APPROVAL_STATUSES:
                known = ", ".join(sorted(_APPROVAL_STATUSES))
                raise ValueError(f"unknown approval status {status!r}; one of {known}")
        return self.store.list_approvals(status, run_id, limit)

    def decide(
        self,
        run_id: str,
        name: str,
        approved: bool,
        by: str | None = None,
        comment: str | None = None,
    ) -> ApprovalRecord:
        """Record the decision on a run's pending approval `name`, once.

        Raises ApprovalNotFound, ApprovalClosed (already decided or timed out), NotAnAssignee,
        RunNotFound or InvalidState (the run has ended); nothing changes then.
        """
        if not isinstance(approved, bool):
            raise TypeError(f"approved must be True or False, got {approved!r}")
        now = self.clock.now()
        source = self.source

        def make_event(kind: str, appr: ApprovalRecord, data: dict[str, Any]) -> Any:
            return approval_event(kind, source, appr, now, data)

        decided = self.store.decide_approval(
            run_id, name, approved, by, comment, now, make_event
        ).result()
        self._wake_worker()
        return decided

    def approve(
        self, run_id: str, name: str, by: str | None = None, comment: str | None = None
    ) -> ApprovalRecord:
        return self.decide(run_id, name, True, by, comment)

    def reject(
        self, run_id: str, name: str, by: str | None = None, comment: str | None = None
    ) -> ApprovalRecord:
        return self.decide(run_id, name, False, by, comment)

    def _wake_worker(self) -> None:
        rt = self._ensure_runtime()
        if rt is not None:
            rt.wake()

    # -- schedules -----------------------------------------------------------------------
    def schedule(
        self,
        name: str,
        workflow: str | Callable[..., Any],
        *args: Any,
        cron: str | None = None,
        every: float | None = None,
        timezone: str = "UTC",
        overlap: str = "skip",
        catchup: float = 60.0,
        queue: str = "default",
        priority: int = 0,
        **kwargs: Any,
    ) -> Schedule:
        """Declare a schedule that starts `workflow(*args, **kwargs)` on a cron expression (in
        `timezone`) or every `every` seconds. It is stored when the worker launches (at once if
        it runs); an unchanged declaration keeps its stored state (paused, next slot).

        `overlap`: "skip" a slot while a run of this schedule has not ended, "buffer_one" keep
        at most one run waiting for it, or "allow_all". After an outage the latest missed slot
        fires, and earlier ones only if at most `catchup` seconds old.
        """
        try:
            wf = self.registry.workflow(_workflow_name(workflow))
        except UnknownWorkflow as exc:
            raise ScheduleError(str(name), str(exc)) from None
        declared = declare(
            name,
            wf.name,
            wf.version,
            args,
            kwargs,
            cron=cron,
            every=every,
            timezone=timezone,
            overlap=overlap,
            catchup=catchup,
            queue=queue,
            priority=priority,
            now=self.clock.now(),
        )
        self._schedules.declare(declared)
        if self._runtime is not None:
            self._publish_schedules()
        return declared

    def schedules(self) -> list[ScheduleRecord]:
        """The stored schedules, by name."""
        return self._schedules.list()

    def pause_schedule(self, name: str) -> ScheduleRecord:
        """Stop firing `name` until resumed (every process on the store; survives restarts)."""
        record = self._schedules.pause(name)
        self._wake_dispatcher()
        return record

    def resume_schedule(self, name: str) -> ScheduleRecord:
        """Fire `name` again from its next slot; slots passed while paused do not fire."""
        record = self._schedules.resume(name)
        self._wake_dispatcher()
        return record

    def trigger_schedule(self, name: str) -> RunHandle:
        """Start one run of schedule `name` now, from its stored workflow, version and input."""
        run, created = self._schedules.trigger(name)
        self._wake_worker()
        return RunHandle(self, run.run_id, created)

    def backfill(
        self, name: str, start: datetime | float, end: datetime | float
    ) -> list[RunHandle]:
        """Start a run for every slot of `name` in [start, end] (a naive datetime is wall time
        in the schedule's time zone). A slot that already has a run keeps it (created=False)."""
        handles = run_handles(self, self._schedules.backfill(name, start, end))
        if handles:
            self._wake_worker()
        return handles

    def _publish_schedules(self) -> None:
        self._schedules.publish()
        self._wake_dispatcher()

    def _wake_dispatcher(self) -> None:
        if self._runtime is not None:
            self._runtime.schedules_changed()

    # -- queues --------------------------------------------------------------------------
    def define_queue(
        self,
        name: str,
        concurrency: int | None = None,
        key_concurrency: int | None = None,
        rate_limit: int | None = None,
        rate_period: float = 1.0,
    ) -> Queue:
        """Set a queue's limits in the store, for every process on it (None: no limit).

        Replaces the queue's earlier limits. Raises `baton.InvalidQueueLimit` for a limit that
        is not a positive number, and then writes nothing.
        """
        queue = Queue(name, concurrency, key_concurrency, rate_limit, rate_period)
        self.store.define_queue(queue, self.clock.now()).result()
        if self._runtime is not None:  # looser limits may let waiting runs in
            self._runtime.wake()
        return queue

    def get_queue(self, name: str) -> Queue | None:
        """The limits stored for queue `name`, or None if it was never defined."""
        return self.store.get_queue(name)

    def list_queues(self) -> list[Queue]:
        return self.store.list_queues()

    # -- lifecycle -----------------------------------------------------------------------
    def launch(self) -> App:
        """Start this process's worker: it recovers runs of dead workers and claims runs."""
        with self._lock:
            if self._closed:
                raise DefinitionError("this App has been shut down")
            if self._runtime is None:
                saga.check(self.registry)  # every compensate= names a registered step
                self._runtime = Runtime(
                    self.store,
                    self.registry,
                    self.clock,
                    self._options,
                    self.source,
                    self._notify,
                )
                atexit.register(self._at_exit)
        self._publish_schedules()
        return self

    def stop_worker(self, timeout: float = 30.0) -> None:
        """Stop this process's worker as `shutdown` does (stop claiming, let running steps
        checkpoint, hand back the rest) but keep the App and its store open: `launch()`
        starts a new worker. A node's `workers` agent stops and restarts this way."""
        with self._lock:
            rt, self._runtime = self._runtime, None
        if rt is not None:
            rt.shutdown(timeout)
            atexit.unregister(self._at_exit)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop claiming, let running steps finish and checkpoint, hand back the rest, close."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            rt, self._runtime = self._runtime, None
        if rt is not None:
            rt.shutdown(timeout)
            atexit.unregister(self._at_exit)
        self.store.close()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- internals -----------------------------------------------------------------------
    def _ensure_runtime(self) -> Runtime | None:
        if self._runtime is None and self._auto_worker and not self._closed:
            self.launch()
        return self._runtime

    def _refuse_on_worker_loop(self, what: str) -> None:
        rt = self._runtime
        if rt is not None and rt.on_loop_thread():
            raise BlockingOnWorkerLoop(what)

    def _serves_queue(self, queue: str) -> bool:
        return self._options.queues is None or queue in self._options.queues

    def _must_get(self, run_id: str) -> RunRecord:
        from baton.core.errors import RunNotFound

        run = self.store.get_run(run_id)
        if run is None:
            raise RunNotFound(run_id)
        return run

    def _waiter(self, run_id: str) -> threading.Event:
        signal = threading.Event()
        with self._lock:
            self._waiters.setdefault(run_id, []).append(signal)
        return signal

    def _unwait(self, run_id: str, signal: threading.Event) -> None:
        with self._lock:
            waiting = self._waiters.get(run_id)
            if waiting is not None:
                waiting.remove(signal)
                if not waiting:
                    del self._waiters[run_id]

    def _notify(self, run_id: str) -> None:
        with self._lock:
            waiting = list(self._waiters.get(run_id, ()))
        for signal in waiting:
            signal.set()

    def _at_exit(self) -> None:
        self.shutdown(timeout=5.0)


_APPROVAL_STATUSES = frozenset({"PENDING", "APPROVED", "REJECTED", "TIMED_OUT"})


def _statuses(statuses: Iterable[str] | None) -> list[str] | None:
    """Status names in any case; an unknown one is an error, not an empty answer."""
    if statuses is None:
        return None
    out = []
    for status in statuses:
        try:
            out.append(RunStatus(str(status).upper()).value)
        except ValueError:
            known = ", ".join(s.value for s in RunStatus)
            raise ValueError(f"unknown run status {status!r}; one of {known}") from None
    return out


def _workflow_name(workflow: str | Callable[..., Any]) -> str:
    if isinstance(workflow, str):
        return workflow
    wf = getattr(workflow, "workflow", None)
    if isinstance(wf, WorkflowDef):
        return wf.name
    raise TypeError(f"start() takes a workflow name or a registered workflow, got {workflow!r}")


class _PendingStart:
    """A start whose insert is submitted: what to do once it commits, or if it fails."""

    __slots__ = ("app", "future", "now", "reserved", "run")

    def __init__(
        self, app: App, reserved: Runtime | None, run: RunRecord, future: Any, now: float
    ) -> None:
        # reserved: the runtime holding a slot for the run, claimed in the same commit
        self.app, self.reserved, self.run, self.future, self.now = app, reserved, run, future, now

    def abandon(self) -> None:
        if self.reserved is not None:
            self.reserved.unreserve()
            self.reserved.claim_in_doubt(self.now)  # it may have committed

    def finish(self, outcome: tuple[RunRecord, bool]) -> RunHandle:
        stored, created = outcome
        app, rt = self.app, self.reserved
        here = None
        if rt is not None:
            # the store leaves it unclaimed when its queue has limits: only a claim admits it
            if created and stored.owner == self.run.owner:
                here = rt.launch_reserved(stored, here=_here.get())
            else:
                rt.unreserve()
                if created:
                    rt.wake()
        else:
            rt = app._runtime
            if rt is not None and self.run.debounce_key is not None:
                rt.due_at(stored.available_at)
            elif rt is not None and created:
                rt.wake()
        log.info(
            "run started",
            run_id=stored.run_id,
            workflow=stored.workflow,
            correlation_id=stored.correlation_id,
            trace_id=tracing.run_traceparent(stored).split("-")[1],
            created=created,
        )
        handle = RunHandle(app, stored.run_id, created, stored)
        handle.execution = here  # for `App.run` to execute in its own thread
        return handle
