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


class FenceLost(BatonError):
    """This worker no longer owns the run: another claim, a cancellation or a timeout won."""

    def __init__(self, run_id: str, fence: int) -> None:
        self.run_id = run_id
        self.fence = fence
        super().__init__(f"run {run_id}: ownership (fence {fence}) was lost")


class DefinitionError(BatonError):
    """A workflow or step definition is invalid (duplicate name, bad option, ...)."""


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
        where = f" in step {self.step!r}" if self.step else ""
        tries = f" after {self.attempts} attempt(s)" if self.attempts else ""
        super().__init__(
            f"run {run_id} ended {status}{where}{tries}: {self.error_type}: {self.message}"
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
