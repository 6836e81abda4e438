"""Typed errors a user can catch. Each carries the fields needed to act on it."""

from __future__ import annotations

from typing import Any


class BatonError(Exception):
    """Base class of every error Baton raises on purpose."""


class SerializationError(BatonError, TypeError):
    """A value that must be stored does not serialize to JSON."""

    def __init__(self, path: str, type_name: str, what: str = "value") -> None:
        self.path = path
        self.type_name = type_name
        super().__init__(f"{what} at {path} is a {type_name}, which is not JSON-serializable")


class StoreError(BatonError):
    """The store cannot be opened or written."""


class StoreUnavailable(StoreError):
    """The store's location cannot be opened (missing directory, no permission, ...)."""

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"cannot open store {location}: {reason}")


class StoreDisconnected(StoreUnavailable):
    """The connection to a store server was lost during a write: it may or may not have
    committed. A run's write is handed back and resumed from its last checkpoint; a start
    should be retried with the same idempotency key."""

    def __init__(self, location: str, reason: str) -> None:
        StoreError.__init__(
            self,
            f"lost the connection to store {location} during a write ({reason}); "
            "it may or may not have been committed",
        )
        self.location = location
        self.reason = reason


class NotABatonStore(StoreError):
    """The file exists but is not a Baton database."""

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"{location} is not a Baton store: {reason}")


class SchemaVersionError(StoreError):
    """The store was written by a newer Baton than this one."""

    def __init__(self, location: str, found: int, supported: int) -> None:
        self.location = location
        self.found = found
        self.supported = supported
        super().__init__(
            f"store {location} has schema version {found}, but this Baton supports up to "
            f"{supported}; upgrade Baton to open it"
        )


class PayloadMissing(StoreError):
    """A row refers to a large payload that is not in the store's `payloads` table."""

    def __init__(self, digest: str) -> None:
        self.digest = digest
        super().__init__(
            f"payload {digest} is missing from the store: a run or step refers to it, "
            f"but no payloads row holds it"
        )


class FenceLost(BatonError):
    """This worker no longer owns the run: another claim, a cancellation or a timeout won."""

    def __init__(self, run_id: str, fence: int) -> None:
        self.run_id = run_id
        self.fence = fence
        super().__init__(f"run {run_id}: ownership (fence {fence}) was lost")


class DefinitionError(BatonError):
    """A workflow or step definition is invalid (duplicate name, bad option, ...)."""


class ScheduleError(BatonError, ValueError):
    """A schedule declared or used wrongly (a cron expression that does not parse, an unknown
    time zone, ...). `field` names the cron field or option at fault. Nothing is written."""

    def __init__(self, schedule: str, problem: str, field: str | None = None) -> None:
        self.schedule = schedule
        self.problem = problem
        self.field = field
        super().__init__(f"schedule {schedule!r}: {problem}")


class ScheduleNotFound(ScheduleError, LookupError):
    def __init__(self, schedule: str) -> None:
        super().__init__(schedule, "no such schedule in the store")


class UnknownWorkflow(BatonError, LookupError):
    def __init__(self, name: str, version: str | None, known: list[str]) -> None:
        self.name = name
        self.version = version
        self.known = known
        which = f"{name!r}" + (f" version {version!r}" if version else "")
        hint = f"; registered: {', '.join(sorted(known))}" if known else "; none are registered"
        super().__init__(f"unknown workflow {which}{hint}")


class RunNotFound(BatonError, LookupError):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run with id {run_id}")


class StepNotFound(BatonError, LookupError):
    """A run has no step with that number (e.g. a fork from a step the run never reached)."""

    def __init__(self, run_id: str, step: int, highest: int) -> None:
        self.run_id = run_id
        self.step = step
        self.highest = highest
        recorded = (
            f"its highest recorded step is {highest}" if highest else "it has recorded no steps"
        )
        super().__init__(
            f"run {run_id} has no step {step} to fork from: {recorded}; "
            f"fork from a step between 1 and {highest + 1}"
        )


class InvalidState(BatonError):
    """The run is not in a state that allows the requested operation."""

    def __init__(self, run_id: str, status: str, operation: str) -> None:
        self.run_id = run_id
        self.status = status
        self.operation = operation
        super().__init__(f"cannot {operation} run {run_id}: it is {status}")


class NonRetryableError(BatonError):
    """Raise from a step to fail it at once, whatever its retry policy says."""


class StepTimeout(BatonError, TimeoutError):
    def __init__(self, step: str, seconds: float) -> None:
        self.step = step
        self.seconds = seconds
        super().__init__(f"step {step!r} did not finish within {seconds:g}s")


class WorkflowTimeout(BatonError, TimeoutError):
    def __init__(self, run_id: str | None = None, seconds: float | None = None) -> None:
        self.run_id = run_id
        self.seconds = seconds
        limit = f" of {seconds:g}s" if seconds is not None else ""
        which = f"run {run_id}" if run_id else "the run"
        super().__init__(f"{which} passed its deadline{limit}")


class DivergenceError(BatonError):
    """The workflow code no longer calls the steps its checkpoints recorded."""

    def __init__(self, run_id: str, seq: int, recorded: str, called: str) -> None:
        self.run_id = run_id
        self.seq = seq
        self.recorded = recorded
        self.called = called
        super().__init__(
            f"run {run_id} diverged at step #{seq}: the checkpoint records {recorded}, "
            f"but the workflow now calls {called}"
        )


class StepFailed(BatonError):
    """A recorded step failure whose original exception type cannot be rebuilt."""

    def __init__(self, step: str, error_type: str, message: str) -> None:
        self.step = step
        self.error_type = error_type
        self.message = message
        super().__init__(f"step {step!r} failed: {error_type}: {message}")


class RunFailed(BatonError):
    """Raised by `RunHandle.result()` for a run that ended FAILED, DEAD or COMPENSATED."""

    def __init__(self, run_id: str, status: str, error: dict[str, Any] | None) -> None:
        error = error or {}
        self.run_id = run_id
        self.status = status
        self.step: str | None = error.get("step")
        self.error_type: str | None = error.get("type")
        self.message: str | None = error.get("message")
        self.attempts: int | None = error.get("attempts")
        self.traceback: str | None = error.get("traceback")
        # the error that started a compensation, when a compensation failed (DEAD)
        self.cause: dict[str, Any] | None = error.get("cause")
        where = f" in step {self.step!r}" if self.step else ""
        tries = f" after {self.attempts} attempt(s)" if self.attempts else ""
        super().__init__(
            f"run {run_id} ended {status}{where}{tries}: {self.error_type}: {self.message}"
        )


class CompensationFailed(BatonError):
    """A compensation failed for good (retries exhausted, or no retry policy): the run that
    was undoing its steps ended DEAD. The run's error keeps what started the compensation
    under "cause"."""

    def __init__(
        self,
        run_id: str,
        step: str,
        undoes: str,
        seq: int,
        attempts: int,
        error_type: str,
        message: str,
    ) -> None:
        self.run_id = run_id
        self.step = step  # the compensation step
        self.undoes = undoes  # the step it undoes
        self.seq = seq  # that step's number
        self.attempts = attempts
        self.error_type = error_type
        self.message = message
        super().__init__(
            f"run {run_id}: compensation {step!r} of step {undoes!r} (#{seq}) failed after "
            f"{attempts} attempt(s): {error_type}: {message}"
        )


class RunCancelled(BatonError):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id} was cancelled")


class ResultTimeout(BatonError, TimeoutError):
    def __init__(self, run_id: str, timeout: float, status: str) -> None:
        self.run_id = run_id
        self.timeout = timeout
        self.status = status
        super().__init__(f"run {run_id} did not finish within {timeout:g}s (it is {status})")


class NotInWorkflow(BatonError):
    """A workflow-only call (sleep, signals, approvals, children) made outside a workflow."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(
            f"{what} can only be called in a workflow function, not in a step or outside a run"
        )


class BlockingOnWorkerLoop(BatonError, RuntimeError):
    """A call that blocks until a run ends (`app.run`, `handle.result`) made on the worker's
    event loop, where async workflows and steps run: it would stall every one of them."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(
            f"{what} blocks until the run ends, and it was called on the worker's event loop, "
            f"which runs every async workflow and step of this process: they would all stall, "
            f"the awaited run too if it is async. In a workflow, use "
            f"`await baton.run_child(...)` (durable); elsewhere, call it from another thread"
        )


class NotADeferredCall(BatonError, TypeError):
    """`baton.gather` got an argument that is not a pending call."""

    def __init__(self, what: str, index: int, got: str) -> None:
        self.what = what
        self.index = index
        self.got = got
        super().__init__(
            f"{what}: argument {index} is {got}, not a pending call; pass step.defer(...), "
            f"baton.child(workflow, ...), or in an async workflow step(...) without await"
        )


class InvalidConcurrency(BatonError, ValueError):
    """A concurrency limit (`baton.map(..., concurrency=N)`) that is not an int >= 1."""

    def __init__(self, what: str, value: Any) -> None:
        self.what = what
        self.value = value
        super().__init__(f"{what}: concurrency must be an int >= 1 or None, got {value!r}")


class SignalTimeout(BatonError, TimeoutError):
    """`wait_for_signal` gave up: no signal of that name arrived in time."""

    def __init__(self, name: str, seconds: float) -> None:
        self.name = name
        self.seconds = seconds
        super().__init__(f"no signal {name!r} arrived within {seconds:g}s")


class ApprovalTimeout(BatonError, TimeoutError):
    """An approval with on_timeout="fail" was not decided in time."""

    def __init__(self, name: str, seconds: float) -> None:
        self.name = name
        self.seconds = seconds
        super().__init__(f"approval {name!r} was not decided within {seconds:g}s")


class ApprovalNotFound(BatonError, LookupError):
    def __init__(self, run_id: str, name: str) -> None:
        self.run_id = run_id
        self.name = name
        super().__init__(f"run {run_id} has no approval named {name!r}")


class ApprovalClosed(BatonError):
    """The approval was already decided or timed out: a decision is recorded only once."""

    def __init__(self, run_id: str, name: str, status: str, by: str | None = None) -> None:
        self.run_id = run_id
        self.name = name
        self.status = status
        self.by = by
        who = f" by {by}" if by else ""
        super().__init__(
            f"approval {name!r} of run {run_id} is already closed ({status}{who}); "
            f"a decision is recorded only once"
        )


class NotAnAssignee(BatonError, PermissionError):
    def __init__(self, run_id: str, name: str, by: str | None, assignees: list[str]) -> None:
        self.run_id = run_id
        self.name = name
        self.by = by
        self.assignees = assignees
        super().__init__(
            f"{by or 'an anonymous caller'} may not decide approval {name!r} of run {run_id}; "
            f"its assignees are {', '.join(assignees)}"
        )


class FlowControlError(BatonError, ValueError):
    """A flow-control setting (queue limit, concurrency key, debounce) that cannot be honoured.
    Nothing is written when it is raised."""

    def __init__(self, where: str, option: str, value: Any, reason: str) -> None:
        self.where = where
        self.option = option
        self.value = value
        self.reason = reason
        super().__init__(f"{where}: {option}={value!r} {reason}")


class InvalidQueueLimit(FlowControlError):
    """`app.define_queue` / `baton.Queue` got a limit that is not a positive number."""


class InvalidStartOption(FlowControlError):
    """`app.start` got a concurrency key, key limit or debounce that does not fit."""


class ConfigError(BatonError, ValueError):
    """A node configuration (baton.yaml, BATON_* environment variables, command-line overrides)
    that cannot be used. `path` is the file (or "<env BATON_PORT>", "<overrides>"), `line` and
    `col` are 1-based (0 where there is no file position), `field` is the dotted key path.

    Several problems found at once come as one ConfigError whose `errors` lists each (its own
    fields are the first one's); its message shows one problem per line."""

    def __init__(
        self,
        problem: str,
        *,
        path: str | None = None,
        line: int = 0,
        col: int = 0,
        field: str = "",
    ) -> None:
        self.path = path or "<config>"
        self.line = line
        self.col = col
        self.field = field
        self.problem = problem
        self.errors: list[ConfigError] = [self]
        super().__init__(self._line())

    @classmethod
    def combine(cls, errors: list[ConfigError]) -> ConfigError:
        """One error standing for all of `errors` (the error itself when there is one)."""
        if not errors:
            raise ValueError("combine() needs at least one error")
        if len(errors) == 1:
            return errors[0]
        first = errors[0]
        combined = cls(
            first.problem, path=first.path, line=first.line, col=first.col, field=first.field
        )
        combined.errors = list(errors)
        combined.args = ("\n".join(e._line() for e in errors),)
        return combined

    def _line(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"{self.path}:{self.line}:{self.col}: {where}{self.problem}"

    def __str__(self) -> str:
        return "\n".join(e._line() for e in self.errors)
