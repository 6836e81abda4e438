"""Baton: durable orchestration for Python on SQLite or PostgreSQL."""

from baton.core.clock import Clock, RealClock, VirtualClock
from baton.core.errors import (
    BatonError,
    DefinitionError,
    DivergenceError,
    FenceLost,
    InvalidState,
    NonRetryableError,
    NotABatonStore,
    ResultTimeout,
    RunCancelled,
    RunFailed,
    RunNotFound,
    SchemaVersionError,
    SerializationError,
    StepFailed,
    StepTimeout,
    StoreError,
    StoreUnavailable,
    UnknownWorkflow,
    WorkflowTimeout,
)
from baton.core.events import CloudEvent
from baton.core.retry import Retry
from baton.engine.app import App
from baton.engine.context import RunContext, current_run
from baton.engine.handles import RunHandle
from baton.observability.logging import configure_logging
from baton.store.records import RunStatus, StepStatus

__version__ = "0.1.0"

__all__ = [
    "App",
    "BatonError",
    "Clock",
    "CloudEvent",
    "DefinitionError",
    "DivergenceError",
    "FenceLost",
    "InvalidState",
    "NonRetryableError",
    "NotABatonStore",
    "RealClock",
    "ResultTimeout",
    "Retry",
    "RunCancelled",
    "RunContext",
    "RunFailed",
    "RunHandle",
    "RunNotFound",
    "RunStatus",
    "SchemaVersionError",
    "SerializationError",
    "StepFailed",
    "StepStatus",
    "StepTimeout",
    "StoreError",
    "StoreUnavailable",
    "UnknownWorkflow",
    "VirtualClock",
    "WorkflowTimeout",
    "configure_logging",
    "current_run",
]
