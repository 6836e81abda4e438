"""The in-process worker: an asyncio loop on its own thread that claims runs, executes them
within a concurrency limit, heartbeats, recovers runs of dead workers and expires deadlines.

Waiting runs hold nothing here: a retry back-off is an `available_at` in the store, and the
dispatcher sleeps until the earliest one (or until woken by a local submission).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import heapq
import os
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from baton.core import events as ev
from baton.core import serialization
from baton.core.clock import Clock
from baton.core.errors import StoreError, WorkflowTimeout
from baton.engine import failures, liveness, loop_handoff
from baton.engine.execution import Execution
from baton.engine.registry import Registry
from baton.engine.run_threads import RunThreads
from baton.engine.scheduler import Scheduler
from baton.observability import metrics
from baton.observability.logging import get_logger
from baton.store.protocol import Store
from baton.store.records import RunRecord, RunStatus, WorkerRecord

T = TypeVar("T")
log = get_logger("baton.runtime")


@dataclass(slots=True)
class RuntimeOptions:
    concurrency: int = 64
    queues: Sequence[str] | None = None
    poll_interval: float = 1.0
    heartbeat_interval: float = 2.0
    worker_ttl: float = 30.0
    claim_batch: int = 64


class Runtime:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        clock: Clock,
        options: RuntimeOptions,
        source: str,
        on_finished: Callable[[str], None],
    ) -> None:
        if options.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {options.concurrency}")
        self.store = store
        self.registry = registry
        self.clock = clock
        self.options = options
        self.source = source
        self.worker_id = f"{liveness.hostname()}:{os.getpid()}:{id(self):x}"
        self.draining = False
        self._on_finished = on_finished
        self._lock = threading.Lock()
        self._active: dict[str, Execution] = {}
        self._reserved = 0
        self._orphans: set[str] = set()
        self._in_doubt: list[float] = []  # times of claims whose commit may have happened
        self._local_due: list[float] = []
        self._here = threading.local()  # a caller's own loop, for the async runs it executes
        self._own_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._loop = asyncio.new_event_loop()
        self._wake: asyncio.Event | None = None
        self._stopped = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._wf_threads = RunThreads(options.concurrency, "baton-wf")
        # a run started here is handed to its thread as the starter's next commit syncs
        self._at_next_sync: Callable[[Callable[[], object]], None] | None = getattr(
            store, "at_next_sync", None
        )
        self._step_pool: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task] = []
        self._next_sweep = 0.0
        self._held_until: float | None = None  # when a rate limit lets held-back runs in
        # due runs may be waiting for a slot or a limit: a finished run wakes the dispatcher
        self._wanting = True
        self._scheduler = Scheduler(store, registry, source, options.poll_interval)
        # where many processes share a store, one leader runs the sweeps (schedules, deadlines,
        # dead workers); each sweep is safe to race, so a lost leader costs nothing but time
        self._try_lead: Callable[[float], bool] | None = getattr(store, "try_lead", None)
        # a leader that stops calling try_lead this long (frozen, cut off) loses the lead
        self._lead_ttl = max(options.worker_ttl, 3 * options.heartbeat_interval)
        self._leading = self._try_lead is None
        self._unsubscribe: Callable[[], None] | None = None
        started: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._main, args=(started,), name="baton-runtime", daemon=True
        )
        self._thread.start()
        started.result()

    # -- called from any thread ---------------------------------------------------------
    def try_reserve(self) -> bool:
        """Reserve a slot for a run this process is about to insert already claimed."""
        with self._lock:
            if self.draining or len(self._active) + self._reserved >= self.options.concurrency:
                return False
            self._reserved += 1
            self._idle.clear()
            return True

    def unreserve(self) -> None:
        with self._lock:
            self._reserved -= 1
            self._maybe_idle()

    def launch_reserved(self, run: RunRecord, here: bool = False) -> Execution | None:
        """Execute a run inserted already claimed in the slot reserved for it. With `here`,
        its execution is returned instead, for the caller to run in its own thread with
        `execute_here` (no hand-off to a worker thread); but an async run goes to the
        worker's loop when the caller's thread runs a loop already."""
        with self._lock:
            self._reserved -= 1
        ex = self._prepare(run, fresh=True)
        # an async one runs on a loop of this thread's own, unless one runs here already
        if here and (not ex.wf.is_async or asyncio._get_running_loop() is None):
            return ex
        if self._at_next_sync is None:
            self._start(ex)
        else:  # its thread wakes as the caller's next commit syncs, not amid its statements
            self._at_next_sync(functools.partial(self._start_soon, ex))
        return None

    def execute_here(self, ex: Execution) -> None:
        """Run `ex` (from `launch_reserved(here=True)`) in this thread: a sync workflow
        directly, an async one on this thread's own event loop (kept for its next run; its
        writes are committed on it). Interrupted (KeyboardInterrupt), the run is handed
        back, to be executed again by a worker."""
        try:
            if ex.wf.is_async:
                self._execute_here_async(ex)
            else:
                ex.run_sync()
        except BaseException:
            now = self.clock.now()
            event = ex.event(ev.RUN_SUSPENDED, now, {"reason": "interrupted", "next_step": ex.seq})
            try:
                self.store.release_run(ex.run.run_id, ex.fence, now, [event]).result()
            except Exception:  # lost meanwhile, or the store is away: recovery takes it
                pass
            self.wake()
            raise

    def schedules_changed(self) -> None:
        self._scheduler.forget()
        self.wake()

    def on_loop_thread(self) -> bool:
        """Is the caller on this worker's event loop (in an async workflow or step)?"""
        return threading.get_ident() == self._thread.ident

    def wake(self) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._set_wake)

    def due_at(self, when: float) -> None:
        """A run of ours becomes due at `when` (its write may not be committed yet): make sure
        the dispatcher looks again then, whatever the store said a moment ago."""
        with self._lock:
            heapq.heappush(self._local_due, when)
        self.wake()

    def cancel_local(self, run_id: str, fence: int | None = None) -> None:
        """Stop the run's execution here; with `fence`, only one that claimed it before."""
        with self._lock:
            ex = self._active.get(run_id)
        if ex is None or (fence is not None and ex.fence >= fence):
            return
        ex.stop_reason = "cancelled"
        if ex.task is not None:
            _cancel(ex.task)

    def _execute_here_async(self, ex: Execution) -> None:
        loop = getattr(self._here, "loop", None)
        if loop is None or loop.is_closed():
            loop = self._here.loop = asyncio.new_event_loop()
            self._own_loops.add(loop)  # closed at shutdown, or when its thread ends:
            self._here.token = token = _ThreadToken()  # dropped with the thread's locals
            weakref.finalize(token, _close_idle, loop)
            commit_on = getattr(self.store, "commit_on_loop", None)
            if commit_on is not None:
                commit_on(loop)

        async def main() -> None:
            ex.task = asyncio.current_task()
            await ex.run_async()

        ex.blocking_waits = True  # nothing else runs on this loop

        try:
            loop.run_until_complete(main())
        except BaseException:
            _settle(loop)  # the next run on this loop finds nothing of this one left
            raise

    def run_coroutine(self, coro: Awaitable[T]) -> T:
        """Run `coro` on the runtime loop from a worker thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()  # type: ignore[arg-type]

    def submit_coroutine(self, coro: Awaitable[T]) -> Future[T]:
        """Start `coro` on the runtime loop from any thread (the loop's own included)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]

    def step_pool(self) -> ThreadPoolExecutor:
        if self._step_pool is None:
            with self._lock:
                if self._step_pool is None:
                    self._step_pool = ThreadPoolExecutor(
                        self.options.concurrency, thread_name_prefix="baton-step"
                    )
        return self._step_pool

    def finished(self, ex: Execution) -> None:
        # a run that succeeded with no parent to wake makes nothing due: the dispatcher need
        # not look again, unless due runs were waiting for a slot (or a limit) it frees
        quiet = ex.output is not None and ex.run.parent_run_id is None
        with self._lock:
            if self._active.get(ex.run.run_id) is ex:  # not a later claim of the same run
                del self._active[ex.run.run_id]
            self._maybe_idle()
            wake = not quiet or self._wanting
        if wake:
            self.wake()
        self._on_finished(ex.run.run_id)

    def claim_in_doubt(self, at: float) -> None:
        """A claim made at `at` (or a start that claimed its run) failed in a way that may
        have committed: whatever it took must be handed back, since nothing executes it."""
        with self._lock:
            self._in_doubt.append(at)
        self.wake()

    def orphaned(self, ex: Execution) -> None:
        """A run whose store write failed: hand it back to the queue once the store answers."""
        with self._lock:
            self._orphans.add(ex.run.run_id)

    def active_count(self) -> int:
        with self._lock:
            return len(self._active)

    def busy(self) -> bool:
        """Executing a run, or about to (a slot reserved for a run being inserted)."""
        with self._lock:
            return bool(self._active) or self._reserved > 0

    def shutdown(self, timeout: float) -> None:
        """Stop claiming; let running steps finish and checkpoint; hand unfinished runs back."""
        if self._stopped.is_set():
            return
        with self._lock:
            self.draining = True
        self.wake()
        drained = self._idle.wait(timeout)
        if not drained:
            log.warning(
                "shutdown timed out; unfinished runs will be recovered", active=self.active_count()
            )
            with self._lock:
                tasks = [ex.task for ex in self._active.values() if ex.task is not None]
            for task in tasks:
                _cancel(task)
        if not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._stop(not drained), self._loop).result()
        self._thread.join()
        self._wf_threads.shutdown(wait=drained)
        if self._step_pool is not None:
            self._step_pool.shutdown(wait=False, cancel_futures=True)
        for loop in list(self._own_loops):  # callers' loops: idle once drained
            _close_idle(loop)
        self._stopped.set()

    # -- loop thread ---------------------------------------------------------------------
    def _main(self, started: Future[None]) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._wake = asyncio.Event()
            self._loop.run_until_complete(self._register())
        except BaseException as exc:
            started.set_exception(exc)
            self._loop.close()
            return
        if self._try_lead is not None:
            self._leading = self._try_lead(self._lead_ttl)
        subscribe = getattr(self.store, "subscribe", None)
        if subscribe is not None:  # another process made work ready: look now, not at the poll
            self._unsubscribe = subscribe(self.wake)
        # this loop's tasks mostly wait for their writes: commit them here, with no hand-off
        self._commit_on_loop: Callable[..., None] | None = getattr(
            self.store, "commit_on_loop", None
        )
        if self._commit_on_loop is not None:
            self._commit_on_loop(self._loop)
        started.set_result(None)
        self._tasks = [
            self._loop.create_task(self._dispatch_forever()),
            self._loop.create_task(self._maintain_forever()),
        ]
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _stop(self, abandoned: bool) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # with our row gone, the next process takes any unfinished run of ours at once
        try:
            await asyncio.wrap_future(self.store.remove_worker(self.worker_id))
        except StoreError as exc:
            log.error("could not deregister worker", error=str(exc), abandoned=abandoned)
        if self._commit_on_loop is not None:
            self._commit_on_loop(self._loop, False)
        self._loop.call_soon(self._loop.stop)

    def _set_wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _maybe_idle(self) -> None:
        if not self._active and not self._reserved:
            self._idle.set()

    def _launch(self, run: RunRecord, fresh: bool = False) -> None:
        self._start(self._prepare(run, fresh))

    def _prepare(self, run: RunRecord, fresh: bool) -> Execution:
        """The execution of a claimed run, counted active here (with its deadline armed)."""
        wf = self.registry.find(run.workflow, run.version)
        assert wf is not None, "claims only take served workflows"
        ex = Execution(self, run, wf, fresh)
        if run.attempt == 1 and run.status != RunStatus.COMPENSATING:  # its first claim
            metrics.run_started(run.workflow)
        with self._lock:
            stale = self._active.get(run.run_id)
            self._active[run.run_id] = ex
            self._idle.clear()
        if stale is not None and stale.stop_reason is None:
            # claimed again (e.g. cancelled into COMPENSATING) while the old claim finishes
            # its step here: stop the old one before it starts another
            stale.stop_reason = "lost"
        if run.deadline_at is not None:
            self._loop.call_soon_threadsafe(self._arm_deadline, ex)
        return ex

    def _start(self, ex: Execution) -> None:
        if ex.wf.is_async:
            loop_handoff.call_soon(self._loop, functools.partial(self._start_task, ex))
        else:
            self._wf_threads.submit(ex.run_sync)

    def _start_soon(self, ex: Execution) -> None:
        """`_start`, made by the writer as a commit syncs."""
        try:
            self._start(ex)
        except RuntimeError:  # shut down meanwhile: the run is recovered as a crashed one's
            log.warning("run not executed: the worker shut down", run_id=ex.run.run_id)
            self.finished(ex)

    def _start_task(self, ex: Execution) -> None:
        # a context of its own: nothing of whoever handed the run over (a step's marks, a
        # bound logger) may follow it into the run
        ex.task = self._loop.create_task(ex.run_async(), context=contextvars.Context())

    def _arm_deadline(self, ex: Execution) -> None:
        delay = max(0.0, (ex.run.deadline_at or 0) - self.clock.now())
        self._loop.call_later(delay, lambda: self._loop.create_task(self._expire_local(ex)))

    async def _expire_local(self, ex: Execution) -> None:
        with self._lock:
            if self._active.get(ex.run.run_id) is not ex or ex.stop_reason is not None:
                return
        if self.clock.now() < (ex.run.deadline_at or 0):
            self._arm_deadline(ex)  # a virtual clock has not got there yet
            return
        try:
            await asyncio.wrap_future(ex.expire())
        except Exception:
            return  # finished or lost in the meantime
        if ex.task is not None:
            _cancel(ex.task)

    async def _register(self) -> None:
        now = time.time()
        worker = WorkerRecord(
            self.worker_id,
            liveness.hostname(),
            os.getpid(),
            liveness.process_started_at(),
            now,
            now,
            [f"{n}@{v}" for n, v in self.registry.served()],
        )
        await asyncio.wrap_future(self.store.register_worker(worker))
        await self._recover()

    async def _dispatch_forever(self) -> None:
        assert self._wake is not None
        while not self.draining:
            try:
                await self._dispatch_once()
            except StoreError as exc:  # the store is away for a moment: keep trying
                log.error("dispatch failed", error=str(exc))
                delay = self.options.poll_interval * random.uniform(0.8, 1.2)
                await self.clock.sleep_until(self.clock.now() + delay, self._wake)

    async def _dispatch_once(self) -> None:
        assert self._wake is not None
        if not self.draining:
            self._wake.clear()
            await self._settle_doubts()
            now = self.clock.now()
            if self._leading and now >= self._next_sweep:
                await self._expire_deadlines(now)
            with self._lock:
                free = self.options.concurrency - len(self._active) - self._reserved
                self._wanting = True  # until this round finds nothing due left behind
            served = self.registry.served()
            target = now + self.options.poll_interval * random.uniform(0.8, 1.2)
            # due schedules first: the runs they start are claimed just below
            fire_at = await self._scheduler.fire_due(now) if self._leading else None
            if fire_at is not None:
                target = min(target, fire_at)
            if free > 0 and served:
                # a read first: most wake-ups (a run finished) find nothing due, and need no write
                due = self.store.next_due(self.options.queues, served)
                if due is not None and due <= now and await self._claim(free, now, served):
                    return  # look again at once: more may be due
                if due is None or due > now:
                    with self._lock:
                        self._wanting = False
                if due is not None and due > now:
                    target = min(target, due)
                # due runs that limits held back: a finished run wakes us, else the rate window
                held = self._held_until
                if due is not None and due <= now and held is not None and held > now:
                    target = min(target, held)
                with self._lock:
                    while self._local_due and self._local_due[0] <= now:
                        heapq.heappop(self._local_due)
                    if self._local_due:
                        target = min(target, self._local_due[0])
            await self.clock.sleep_until(target, self._wake)

    async def _claim(self, free: int, now: float, served: list[tuple[str, str]]) -> int:
        self._held_until = None
        try:
            runs = await asyncio.wrap_future(
                self.store.claim_runs(
                    self.worker_id,
                    self.options.queues,
                    min(free, self.options.claim_batch),
                    now,
                    self.options.worker_ttl,
                    self.source,
                    served,
                    alive_at=time.time(),
                )
            )
        except StoreError as exc:
            log.error("claim failed", error=str(exc))
            self.claim_in_doubt(now)  # the connection may have been lost during its COMMIT
            return 0
        if getattr(runs, "unregistered", False):  # declared dead meanwhile: rejoin, then claim
            log.warning("worker row was removed; registering again")
            await self._register()
            self._set_wake()  # and claim at once
            return 0
        self._held_until = getattr(runs, "retry_at", None)
        for run in runs:
            try:
                self._launch(run)
            except StoreError as exc:  # its checkpoints could not be read: hand it back
                log.error("claimed run not started", run_id=run.run_id, error=str(exc))
                with self._lock:
                    self._orphans.add(run.run_id)
        return len(runs)

    async def _settle_doubts(self) -> None:
        """Hand back the runs of claims in doubt (see `claim_in_doubt`) that are not
        executing here. A StoreError leaves them in doubt, for the next round."""
        with self._lock:
            if not self._in_doubt:
                return
            times = list(self._in_doubt)
            keep = set(self._active)
        release = getattr(self.store, "release_claims", None)
        if release is not None:  # a store whose commits are never in doubt has none
            released = await asyncio.wrap_future(
                release(self.worker_id, times, keep, self.clock.now(), self.source)
            )
            if released:
                log.warning("handed back runs of a claim in doubt", count=len(released))
        with self._lock:
            del self._in_doubt[: len(times)]

    async def _expire_deadlines(self, now: float) -> None:
        self._next_sweep = now + self.options.poll_interval
        error = serialization.dumps(failures.describe(WorkflowTimeout()))
        try:
            expired = await asyncio.wrap_future(
                self.store.expire_deadlines(now, error, self.source)
            )
        except StoreError as exc:
            log.error("deadline sweep failed", error=str(exc))
            return
        for run in expired:
            metrics.run_finished(run.workflow, RunStatus.FAILED)
            self.cancel_local(run.run_id)
            self._on_finished(run.run_id)

    async def _maintain_forever(self) -> None:
        while True:
            await asyncio.sleep(self.options.heartbeat_interval * random.uniform(0.9, 1.1))
            try:
                alive = await asyncio.wrap_future(self.store.heartbeat(self.worker_id, time.time()))
                if not alive:  # declared dead while frozen: our runs were requeued; rejoin
                    log.warning("worker row was removed; registering again")
                    await self._register()
                if self._try_lead is not None:
                    leading = await self._loop.run_in_executor(None, self._try_lead, self._lead_ttl)
                    if leading != self._leading:
                        log.info("leadership changed", leading=leading, worker=self.worker_id)
                        self._leading = leading
                        self._set_wake()
                if self._leading:
                    await self._recover()
                await self._release_orphans()
            except StoreError as exc:
                log.error("maintenance failed", error=str(exc))

    async def _recover(self) -> None:
        now = time.time()
        ttl = self.options.worker_ttl
        dead = [
            w
            for w in self.store.list_workers()
            if w.worker_id != self.worker_id and liveness.is_gone(w, now, ttl)
        ]
        runs = await asyncio.wrap_future(
            self.store.requeue_orphans(dead, self.clock.now(), self.source)
        )
        if runs:
            gone = [w.worker_id for w in dead]
            log.info("recovered runs of dead workers", count=len(runs), workers=gone)
            self._set_wake()

    async def _release_orphans(self) -> None:
        with self._lock:
            orphans = list(self._orphans)
        for run_id in orphans:
            run = self.store.get_run(run_id)
            if run is not None and run.owner == self.worker_id:
                await asyncio.wrap_future(
                    self.store.release_run(run_id, run.fence, self.clock.now(), [])
                )
            with self._lock:
                self._orphans.discard(run_id)
        if orphans:
            self._set_wake()


class _ThreadToken:
    """Held in a thread's locals only: its finalizer runs when the thread ends."""


def _close_idle(loop: asyncio.AbstractEventLoop) -> None:
    if not loop.is_running() and not loop.is_closed():
        loop.close()


def _cancel(task: asyncio.Task) -> None:
    """Cancel `task` from any thread, on the loop it runs on (the runtime's, or a caller's)."""
    loop = task.get_loop()
    if not loop.is_closed():
        loop.call_soon_threadsafe(task.cancel)


def _settle(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on `loop` after an interruption and let it unwind; a loop that
    cannot be settled is closed (the next run makes another)."""
    try:
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
    except BaseException:
        loop.close()
        raise
