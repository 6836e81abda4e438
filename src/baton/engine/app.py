"""`baton.App`: register workflows and steps, start runs, and host a worker."""

from __future__ import annotations

import atexit
import functools
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

from baton.core import events as ev
from baton.core import serialization
from baton.core.clock import Clock, RealClock
from baton.core.errors import DefinitionError
from baton.core.events import run_event
from baton.core.ids import new_id
from baton.core.retry import Retry
from baton.engine import liveness
from baton.engine.execution import current, in_step
from baton.engine.handles import RunHandle
from baton.engine.registry import Registry, StepDef, WorkflowDef, is_async
from baton.engine.runtime import Runtime, RuntimeOptions
from baton.observability.logging import get_logger
from baton.store import open_store
from baton.store.protocol import Store
from baton.store.records import EventRecord, RunRecord, RunStatus, StepRecord

F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("baton.app")


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
        synchronous: str = "FULL",
    ) -> None:
        options = (
            {"synchronous": synchronous} if isinstance(store, str | os.PathLike | None) else {}
        )
        self.store: Store = open_store(store, **options)  # type: ignore[arg-type]
        self.clock: Clock = clock or RealClock()
        self.registry = Registry()
        self.source = f"baton://{liveness.hostname()}/{os.getpid()}"
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
        self, *, name: str | None = None, retry: Retry | None = None, timeout: float | None = None
    ) -> Callable[[F], F]: ...

    def step(self, fn=None, *, name=None, retry=None, timeout=None):  # type: ignore[no-untyped-def]
        """Register a step. Inside a run it is checkpointed; elsewhere it is a plain call.

        In an `async def` workflow every step is awaited (sync steps run in a thread pool).
        """
        if retry is not None and not isinstance(retry, Retry):
            raise DefinitionError(f"retry= takes a baton.Retry, got {type(retry).__name__}")
        if timeout is not None and timeout <= 0:
            raise DefinitionError(f"timeout= must be > 0 seconds, got {timeout}")

        def register(f: F) -> F:
            step = StepDef(name or f.__qualname__, f, is_async(f), retry, timeout)
            self.registry.add_step(step)

            @functools.wraps(f)
            def checkpointed(*args: Any, **kwargs: Any) -> Any:
                ex = current.get()
                if ex is None or in_step.get():
                    return f(*args, **kwargs)
                if ex.wf.is_async:
                    return ex.call_async(step, args, kwargs)
                return ex.call_sync(step, args, kwargs)

            checkpointed.step = step  # type: ignore[attr-defined]
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
        **kwargs: Any,
    ) -> RunHandle:
        """Durably record a new run and return its handle (after the commit)."""
        wf = self.registry.workflow(_workflow_name(workflow), version)
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
            available_at=now,
            correlation_id=correlation_id or run_id,
            input=payload,
            created_at=now,
            updated_at=now,
            idempotency_key=idempotency_key,
            timeout=timeout,
            deadline_at=None if timeout is None else now + timeout,
        )
        events = [
            run_event(
                ev.RUN_ENQUEUED, self.source, run, now, {"queue": queue, "priority": priority}
            )
        ]
        rt = self._ensure_runtime()
        direct = rt is not None and self._serves_queue(queue) and rt.try_reserve()
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
            stored, created = self.store.create_run(run, events).result()
        except BaseException:
            if direct:
                rt.unreserve()  # type: ignore[union-attr]
            raise
        if direct:
            if created:
                rt.launch_reserved(stored)  # type: ignore[union-attr]
            else:
                rt.unreserve()  # type: ignore[union-attr]
        elif rt is not None and created:
            rt.wake()
        log.info(
            "run started",
            run_id=stored.run_id,
            workflow=wf.name,
            correlation_id=stored.correlation_id,
            created=created,
        )
        return RunHandle(self, stored.run_id, created)

    def run(self, workflow: str | Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Start a run and wait for its result."""
        return self.start(workflow, *args, **kwargs).result()

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
        """Cancel a run that has not ended. A step already running finishes, unrecorded."""
        now = self.clock.now()
        run = self._must_get(run_id)
        event = run_event(ev.RUN_CANCELLED, self.source, run, now, {"previous": run.status})
        cancelled = self.store.cancel_run(run_id, now, [event]).result()
        if self._runtime is not None:
            self._runtime.cancel_local(run_id)
        self._notify(run_id)
        return cancelled

    def redrive(self, run_id: str) -> RunHandle:
        """Send a DEAD or FAILED run back to its queue; it resumes at the failed step."""
        now = self.clock.now()
        run = self._must_get(run_id)
        event = run_event(ev.RUN_REDRIVEN, self.source, run, now, {"previous": run.status})
        self.store.redrive_run(run_id, now, [event]).result()
        rt = self._ensure_runtime()
        if rt is not None:
            rt.wake()
        return RunHandle(self, run_id)

    # -- lifecycle -----------------------------------------------------------------------
    def launch(self) -> App:
        """Start this process's worker: it recovers runs of dead workers and claims runs."""
        with self._lock:
            if self._closed:
                raise DefinitionError("this App has been shut down")
            if self._runtime is None:
                self._runtime = Runtime(
                    self.store,
                    self.registry,
                    self.clock,
                    self._options,
                    self.source,
                    self._notify,
                )
                atexit.register(self._at_exit)
        return self

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
