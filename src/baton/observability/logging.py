"""JSON logs through structlog; run_id, step and correlation_id ride on contextvars."""

from __future__ import annotations

import logging
import os
import sys
from typing import IO, Any

import structlog
from opentelemetry import trace
from structlog.contextvars import bind_contextvars, bound_contextvars, unbind_contextvars

__all__ = [
    "bind_contextvars",
    "bound_contextvars",
    "configure_logging",
    "get_logger",
    "trace_context",
    "unbind_contextvars",
]

_configured = False


def configure_logging(level: str | int | None = None, stream: IO[str] | None = None) -> None:
    """Send JSON lines to `stream` (stderr) at `level` (BATON_LOG_LEVEL, default WARNING)."""
    global _configured
    level = level or os.environ.get("BATON_LOG_LEVEL", "WARNING")
    if isinstance(level, str):
        level = logging.getLevelNamesMapping().get(level.upper(), logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            trace_context,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    _configured = True


def trace_context(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor: `trace_id` and `span_id` of the current span, when one is
    recording (a run or step span while tracing is on, or the application's own)."""
    span = trace.get_current_span()
    if span.is_recording():
        ctx = span.get_span_context()
        event.setdefault("trace_id", f"{ctx.trace_id:032x}")
        event.setdefault("span_id", f"{ctx.span_id:016x}")
    return event


def get_logger(name: str = "baton") -> Any:
    if not _configured:
        configure_logging()
    return structlog.get_logger(name)
