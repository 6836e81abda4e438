"""`baton.current_run()`: what a workflow or step can know about the run it is part of."""

from __future__ import annotations

from dataclasses import dataclass

from baton.engine.execution import current, in_step


@dataclass(frozen=True, slots=True)
class RunContext:
    run_id: str
    workflow: str
    version: str
    correlation_id: str
    step: str | None = None  # set inside a step
    seq: int | None = None
    attempt: int | None = None

    @property
    def idempotency_key(self) -> str | None:
        """`run_id:seq`: stable across retries and recoveries of this step; hand it to
        outside systems so that a step that runs again does not act twice."""
        return None if self.seq is None else f"{self.run_id}:{self.seq}"


def current_run() -> RunContext | None:
    """The run being executed here, or None outside a run."""
    ex = current.get()
    if ex is None:
        return None
    run = ex.run
    step = in_step.get()
    name, seq, attempt = step if step is not None else (None, None, None)
    return RunContext(run.run_id, run.workflow, run.version, run.correlation_id, name, seq, attempt)
