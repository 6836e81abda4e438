"""OpenTelemetry spans for runs and steps, joined into one trace per run across executions.

`app.start` stores a W3C `traceparent` on the run: the active span's context when there is one
(a run started inside a traced HTTP request joins that request's trace), else a new trace id
and span id. Each time a worker executes the run (its first claim, and every resume after a
wait, a retry back-off or a crash) it opens a span "run <workflow>" whose parent is extracted
from that stored traceparent, so all the executions of a run share one trace id. Each step
attempt is a child span "step <name>".

Spans are made only when tracing is on: `configure_tracing()` gave Baton a TracerProvider of
its own, or the application installed an SDK provider globally. Otherwise the OTel API would
be a no-op anyway, and Baton skips it altogether (one type check per run execution).
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, Span, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from collections.abc import Callable

    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

__all__ = [
    "TRACER_NAME",
    "RunTrace",
    "configure_tracing",
    "derived_traceparent",
    "detach",
    "new_traceparent",
    "reset_tracing",
    "run_traceparent",
    "start_run",
    "tracer",
]

TRACER_NAME = "baton"
_propagator = TraceContextTextMapPropagator()
_own: tuple[Any, Tracer] | None = None  # (provider, tracer) from configure_tracing
_global: tuple[Any, Tracer | None] = (None, None)  # the global provider last seen, its tracer


# -- set-up ------------------------------------------------------------------------------------
def configure_tracing(
    exporter: SpanExporter | None = None,
    service_name: str = "baton",
    *,
    provider: TracerProvider | None = None,
    batch: bool = True,
    set_global: bool = False,
) -> TracerProvider:
    """Turn tracing on for Baton and return the TracerProvider its spans go to.

    Without `provider`, an SDK TracerProvider is made for `service_name`. Spans go to
    `exporter` through a BatchSpanProcessor (a SimpleSpanProcessor, exporting as each span
    ends, with `batch=False`: for tests). With no exporter and `OTEL_EXPORTER_OTLP_ENDPOINT`
    (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, the OTLP exporter is used; it is not a
    Baton dependency (`pip install opentelemetry-exporter-otlp-proto-http`, or `-grpc` with
    `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`), and ImportError says so when it is missing.

    Baton keeps its own reference to the provider: the global one (`trace.set_tracer_provider`,
    which can be set once per process) is left alone unless `set_global=True`.
    """
    global _own
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if provider is None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        if exporter is None and _otlp_configured():
            exporter = _otlp_exporter()
    if exporter is not None:
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        provider.add_span_processor(processor)
    _own = (provider, provider.get_tracer(TRACER_NAME))
    if set_global:
        trace.set_tracer_provider(provider)
    return provider


def reset_tracing() -> None:
    """Forget the provider `configure_tracing` gave Baton (a global SDK provider still counts)."""
    global _own
    _own = None


def tracer() -> Tracer | None:
    """Baton's tracer, or None when spans would go nowhere (no SDK provider anywhere)."""
    own = _own
    if own is not None:
        return own[1]
    global _global
    provider = trace.get_tracer_provider()
    seen, found = _global
    if provider is not seen:
        usable = not isinstance(provider, ProxyTracerProvider | NoOpTracerProvider)
        found = provider.get_tracer(TRACER_NAME) if usable else None
        _global = (provider, found)
    return found


def _otlp_configured() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def _otlp_exporter() -> SpanExporter:
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    grpc = protocol.strip().lower() == "grpc"
    package = "opentelemetry-exporter-otlp-proto-" + ("grpc" if grpc else "http")
    try:
        if grpc:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter,
            )
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter,
            )
    except ImportError as exc:
        raise ImportError(
            f"OTEL_EXPORTER_OTLP_ENDPOINT is set, but the OTLP exporter is not installed "
            f"(it is not a Baton dependency): pip install {package}, or pass exporter= to "
            f"configure_tracing"
        ) from exc
    return OTLPSpanExporter()


# -- a run's trace context -----------------------------------------------------------------------
def new_traceparent() -> str:
    """The traceparent a new run stores: the active span's, else a new trace and span id."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
    trace_id = random.getrandbits(128) or 1
    span_id = random.getrandbits(64) or 1
    return f"00-{trace_id:032x}-{span_id:016x}-01"


def derived_traceparent(run_id: str) -> str:
    """A traceparent computed from the run id alone: the same in every process, for runs
    stored without one (children, schedule firings and forks, runs from before tracing)."""
    digest = hashlib.blake2b(run_id.encode(), digest_size=24).hexdigest()
    return f"00-{digest[:32]}-{digest[32:]}-01"


def run_traceparent(run: Any, get_run: Callable[[str], Any] | None = None) -> str:
    """The trace context of `run`'s executions: its stored traceparent; for a child run stored
    without one, its parent's (so a child joins its parent's trace); else a derived one."""
    seen = 0
    while run.traceparent is None and run.parent_run_id is not None and get_run is not None:
        seen += 1
        try:
            parent = get_run(run.parent_run_id) if seen < 32 else None
        except Exception:
            parent = None
        if parent is None:
            break
        run = parent
    return run.traceparent or derived_traceparent(run.run_id)


def start_run(run: Any, get_run: Callable[[str], Any] | None = None) -> RunTrace | None:
    """Open the span of one execution of `run` and make it current in this thread or task;
    None when tracing is off (or cannot start: a run never fails for its span). Close it with
    `RunTrace.close()` in the same thread or task."""
    t = tracer()
    if t is None:
        return None
    try:
        return RunTrace(t, run, get_run)
    except Exception:
        return None


def detach(token: object) -> None:
    """Undo `RunTrace.open_step`'s attach (in the same thread or task)."""
    otel_context.detach(token)  # type: ignore[arg-type]


class RunTrace:
    """One execution's span ("run <workflow>") and its step spans ("step <name>")."""

    __slots__ = ("context", "span", "token", "tracer")

    def __init__(self, tracer: Tracer, run: Any, get_run: Callable[[str], Any] | None) -> None:
        parent = _propagator.extract({"traceparent": run_traceparent(run, get_run)})
        self.tracer = tracer
        self.span: Span = tracer.start_span(
            f"run {run.workflow}",
            context=parent,
            attributes={
                "baton.run_id": run.run_id,
                "baton.workflow": run.workflow,
                "baton.version": run.version,
                "baton.correlation_id": run.correlation_id,
                "baton.attempt": run.attempt,
                "baton.status": str(run.status),
            },
        )
        self.context: Context = trace.set_span_in_context(self.span, parent)
        self.token = otel_context.attach(self.context)

    def failed(self, exc: BaseException | None = None, description: str | None = None) -> None:
        """The run failed here (the workflow raised `exc`, or a step used up its retries)."""
        if exc is not None:
            self.span.record_exception(exc)
            description = description or f"{type(exc).__name__}: {exc}"
        self.span.set_status(Status(StatusCode.ERROR, description))

    def close(self, outcome: str | None = None) -> None:
        if outcome is not None:
            self.span.set_attribute("baton.outcome", outcome)
        try:
            otel_context.detach(self.token)
        finally:
            self.span.end()

    # -- steps --------------------------------------------------------------------------------
    def open_step(self, name: str, seq: int, attempt: int) -> tuple[Span, object]:
        """A step attempt's span, current until `otel_context.detach(token)`."""
        span = self.step_span(name, seq, attempt)
        return span, otel_context.attach(trace.set_span_in_context(span, self.context))

    def step_span(self, name: str, seq: int, attempt: int, started: float | None = None) -> Span:
        """A step attempt's span; `started` (a `time.perf_counter()` reading) backdates it, for
        an attempt that ran without a span of its own (a call of `baton.gather`)."""
        start_time = None
        if started is not None:
            start_time = time.time_ns() - int((time.perf_counter() - started) * 1e9)
        return self.tracer.start_span(
            f"step {name}",
            context=self.context,
            start_time=start_time,
            attributes={"baton.step": name, "baton.seq": seq, "baton.attempt": attempt},
        )

    @staticmethod
    def end_step(
        span: Span, exc: BaseException | None = None, retry_delay: float | None = None
    ) -> None:
        if exc is not None:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            if retry_delay is not None:
                span.set_attribute("baton.retry_delay", retry_delay)
        span.end()
