"""Changing workflow code safely: `baton.patched` markers and the replay check.

Runs stay pinned to the version they started on, so a new version can be registered beside the
old one. For a change made in place, `baton.patched("change-id")` tells new runs (True) from runs
whose history was recorded before the change (False). `replay_check` runs the recorded step
sequence of stored runs against the current code, without running a single step, and reports
the first divergence of each: the check to run in CI before deploying a change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from baton.core.clock import RealClock
from baton.core.errors import DivergenceError, NotInWorkflow
from baton.engine.execution import Execution, Unwind, _Plan, current, in_step
from baton.engine.registry import Registry, StepDef
from baton.store.records import TERMINAL, RunRecord, StepRecord, StepStatus

if TYPE_CHECKING:
    from baton.store.protocol import Store


def patched(change_id: str) -> bool:
    """True on the code path of `change_id` for runs that reach it with this code; False
    for runs whose history was recorded before the change. Sync in every workflow."""
    if not isinstance(change_id, str) or not change_id:
        raise ValueError(f"baton.patched needs a non-empty change id, got {change_id!r}")
    ex = current.get()
    if ex is None or in_step.get() is not None:
        raise NotInWorkflow("baton.patched")
    name = f"baton.patch:{change_id}"
    rec = ex.recorded.get(ex.seq + 1)
    if rec is not None:
        if rec.kind == "patch" and rec.name == name:
            ex.seq += 1
            return True
        return False  # recorded before the change: keep the old path
    ex.seq += 1
    if not isinstance(ex, ReplayExecution):
        # not awaited: the writer commits in order, so any later checkpoint implies this one
        marker = ex.record(ex.seq, name, "patch", StepStatus.SUCCEEDED, ex.rt.clock.now(), None)
        marker.finished_at = marker.started_at
        ex.rt.store.save_step(ex.fence, marker, [])
    return True


@dataclass(frozen=True, slots=True)
class ReplayResult:
    run_id: str
    workflow: str
    version: str
    run_status: str
    outcome: str  # ok, diverged, unserved, error
    replayed: int  # checkpoints matched before the end of history or the divergence
    seq: int | None = None
    message: str = ""

    @property
    def failed(self) -> bool:
        """A problem for deployment: a divergence, or an unfinished run nobody can serve."""
        return self.outcome in ("diverged", "error") or (
            self.outcome == "unserved" and self.run_status not in TERMINAL
        )


def replay_check(
    store: Store,
    registry: Registry,
    runs: Iterable[RunRecord],
) -> list[ReplayResult]:
    """Replay each run's recorded checkpoints against the registered code, side-effect free."""
    results = []
    for run in runs:
        wf = registry.find(run.workflow, run.version)
        if wf is None:
            results.append(
                ReplayResult(
                    run.run_id,
                    run.workflow,
                    run.version,
                    run.status,
                    "unserved",
                    0,
                    message=f"workflow {run.workflow!r} version {run.version!r} is not "
                    f"registered in this code",
                )
            )
            continue
        ex = ReplayExecution(_ReplayRuntime(store, registry), run, wf)
        if wf.is_async:
            asyncio.run(ex.run_async())
        else:
            ex.run_sync()
        results.append(ex.result())
    return results


class _EndOfHistory(Unwind):
    """The replay reached a call the run has not recorded yet: everything before matched."""


class _Diverged(Unwind):
    pass


class ReplayExecution(Execution):
    """An Execution that only reads checkpoints: it never runs a step and never writes."""

    def __init__(self, rt: Any, run: RunRecord, wf: Any) -> None:
        super().__init__(rt, run, wf)
        self.outcome = "ok"
        self.message = ""
        self.at: int | None = None

    def result(self) -> ReplayResult:
        run = self.run
        replayed = len([s for s in self.recorded if 0 < s <= self.seq])
        if self.outcome == "diverged":
            replayed = max(0, (self.at or 1) - 1)
        return ReplayResult(
            run.run_id,
            run.workflow,
            run.version,
            run.status,
            self.outcome,
            replayed,
            self.at,
            self.message,
        )

    # a step: its recorded value, or the end of what this run has recorded
    def plan(self, step: StepDef, *args: Any, **kwargs: Any) -> _Plan:
        plan = super().plan(step, *args, **kwargs)
        if plan.kind == "run":
            raise _EndOfHistory("end of history")
        return plan

    def enter(
        self, kind: str, name: str, seq: int | None = None
    ) -> Generator[Future, Any, tuple[int, StepRecord | None]]:
        seq, rec = yield from super().enter(kind, name, seq)
        if rec is None or rec.status not in (StepStatus.SUCCEEDED, StepStatus.FAILED):
            raise _EndOfHistory("end of history")
        return seq, rec

    def completed(self, result: Any) -> Future:
        leftover = [s for seq, s in sorted(self.recorded.items()) if seq > self.seq]
        if leftover:
            first = leftover[0]
            self._diverge(
                DivergenceError(
                    self.run.run_id, first.seq, repr(first.name), "nothing (the workflow returned)"
                )
            )
        return _done()

    def crashed(self, exc: BaseException) -> Future:
        # a run that recorded a failure raises it again on replay: that is its history
        if self.run.error is None:
            self.outcome, self.at = "error", self.seq
            self.message = f"the workflow raised {type(exc).__name__}: {exc}"
        return _done()

    def _finish_failed(
        self, exc: BaseException, step: str | None, now: float, attempts: int | None = None
    ) -> Future:
        if isinstance(exc, DivergenceError):
            self._diverge(exc)
        self.outcome, self.message = "error", str(exc)
        raise _Diverged(str(exc))

    def _gate(self) -> _Plan | None:
        return None  # no deadlines, cancellations or draining while replaying

    def _diverge(self, exc: DivergenceError) -> None:
        self.outcome, self.at, self.message = "diverged", exc.seq, str(exc)
        raise _Diverged(str(exc))


class _ReplayRuntime:
    """What an Execution needs from a worker, for a replay that writes nothing."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry  # child workflows are looked up by name
        self.clock = RealClock()
        self.source = "baton://replay-check"
        self.worker_id = "replay-check"
        self.draining = False

    def due_at(self, when: float) -> None:
        pass

    def finished(self, ex: Execution) -> None:
        pass

    def orphaned(self, ex: Execution) -> None:
        pass


def _done() -> Future:
    fut: Future = Future()
    fut.set_result(None)
    return fut
