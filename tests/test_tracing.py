"""OpenTelemetry spans of runs and steps, and the traceparent a run keeps across executions."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import baton
from baton.observability import tracing
from baton.observability.logging import configure_logging
from baton.store.records import RunStatus
from conftest import wait_until

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
FAST = baton.Retry(max_attempts=3, initial=0.01, backoff=1.0, jitter=False)


@pytest.fixture(scope="module")
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """Baton's own provider for this module: the OTel global one is never set."""
    exporter = InMemorySpanExporter()
    provider = tracing.configure_tracing(exporter, service_name="baton-tests", batch=False)
    yield provider, exporter
    tracing.reset_tracing()
    provider.shutdown()


@pytest.fixture
def spans(provider) -> Iterator[InMemorySpanExporter]:
    _, exporter = provider
    exporter.clear()
    yield exporter
    exporter.clear()


def _result(handle: baton.RunHandle) -> object:
    """The run's result, once the worker is idle: a run's end is visible in the store a moment
    before its execution closes its span."""
    try:
        return handle.result(timeout=10)
    finally:
        wait_until(lambda: handle.app._runtime.active_count() == 0, what="the worker idle")


def _of_run(exporter: InMemorySpanExporter, run_id: str) -> list[ReadableSpan]:
    """The spans of one run: its run spans and the steps under them, in the order they ended."""
    finished = exporter.get_finished_spans()
    runs = [s for s in finished if s.attributes.get("baton.run_id") == run_id]
    ids = {s.context.span_id for s in runs}
    return [s for s in finished if s in runs or (s.parent and s.parent.span_id in ids)]


def _trace_ids(traceparent: str) -> tuple[int, int]:
    _, trace_id, span_id, _ = traceparent.split("-")
    return int(trace_id, 16), int(span_id, 16)


@pytest.mark.parametrize("use_async", [False, True])
def test_steps_are_children_of_their_run_span(make_app, spans, use_async):
    app = make_app()

    @app.step()
    def one(x: int) -> int:
        return x + 1

    @app.step()
    async def two(x: int) -> int:
        return x * 2

    if use_async:

        @app.workflow(name="traced")
        async def traced(x: int) -> int:
            return await two(await one(x))
    else:

        @app.workflow(name="traced")
        def traced(x: int) -> int:
            return two(one(x))

    handle = app.start(traced, 1, correlation_id="c-7")
    assert _result(handle) == 4
    run = app.get_run(handle.id)
    assert TRACEPARENT.match(run.traceparent)
    trace_id, root_span_id = _trace_ids(run.traceparent)

    found = _of_run(spans, handle.id)
    (run_span,) = [s for s in found if s.name == "run traced"]
    steps = [s for s in found if s.name.startswith("step ")]
    assert [s.name for s in steps] == [f"step {one.step.name}", f"step {two.step.name}"]
    assert run_span.context.trace_id == trace_id
    assert run_span.parent.span_id == root_span_id  # the root the run stored at its start
    assert dict(run_span.attributes) == {
        "baton.run_id": handle.id,
        "baton.workflow": "traced",
        "baton.version": "1",
        "baton.correlation_id": "c-7",
        "baton.attempt": 1,
        "baton.status": "RUNNING",
    }
    for seq, step in enumerate(steps, start=1):
        assert step.context.trace_id == trace_id
        assert step.parent.span_id == run_span.context.span_id
        assert step.attributes["baton.seq"] == seq and step.attributes["baton.attempt"] == 1
        assert run_span.start_time <= step.start_time <= step.end_time <= run_span.end_time
        assert step.status.status_code == StatusCode.UNSET
    assert run_span.resource.attributes["service.name"] == "baton-tests"


def test_a_run_started_inside_a_span_joins_its_trace(make_app, spans, provider):
    app = make_app()

    @app.step()
    def work() -> str:
        return "done"

    @app.workflow()
    def handler() -> str:
        return work()

    request_tracer = provider[0].get_tracer("web")
    with request_tracer.start_as_current_span("POST /orders") as request:
        handle = app.start(handler)
    ctx = request.get_span_context()
    assert _result(handle) == "done"
    assert (
        app.get_run(handle.id).traceparent
        == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
    )
    (run_span,) = [s for s in _of_run(spans, handle.id) if s.name == "run handler"]
    assert run_span.context.trace_id == ctx.trace_id
    assert run_span.parent.span_id == ctx.span_id


def test_the_traceparent_round_trips_through_the_store(make_app, provider):
    app = make_app(worker=False)

    @app.workflow()
    def parked() -> None:
        pass

    with provider[0].get_tracer("web").start_as_current_span("request") as request:
        handle = app.start(parked)
    ctx = request.get_span_context()
    expected = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
    assert app.get_run(handle.id).traceparent == expected
    assert [r.traceparent for r in app.runs()] == [expected]
    other = app.start(parked)  # outside any span: a trace of its own
    stored = app.get_run(other.id).traceparent
    assert TRACEPARENT.match(stored) and stored[3:35] != expected[3:35]


@pytest.mark.parametrize("use_async", [False, True])
def test_a_run_resumed_after_a_sleep_stays_in_its_trace(make_app, spans, use_async):
    clock = baton.VirtualClock()
    app = make_app(clock=clock)

    @app.step()
    def before() -> int:
        return 1

    @app.step()
    def after(x: int) -> int:
        return x + 1

    if use_async:

        @app.workflow(name="napper")
        async def napper() -> int:
            x = await before()
            await baton.sleep(3600)
            return await after(x)
    else:

        @app.workflow(name="napper")
        def napper() -> int:
            x = before()
            baton.sleep(3600)
            return after(x)

    handle = app.start(napper)
    wait_until(lambda: app.get_run(handle.id).status == RunStatus.WAITING, what="WAITING")
    clock.advance(3601)
    assert _result(handle) == 2

    trace_id, root = _trace_ids(app.get_run(handle.id).traceparent)
    found = _of_run(spans, handle.id)
    first, second = [s for s in found if s.name == "run napper"]
    assert first.context.trace_id == second.context.trace_id == trace_id
    assert first.parent.span_id == second.parent.span_id == root
    assert first.context.span_id != second.context.span_id
    assert (first.attributes["baton.attempt"], second.attributes["baton.attempt"]) == (1, 2)
    assert first.attributes["baton.outcome"] == "waiting"
    assert "baton.outcome" not in second.attributes
    # each execution has the steps it ran: `before` in the first, `after` in the second
    under = {
        run.context.span_id: [s.name for s in found if s.parent.span_id == run.context.span_id]
        for run in (first, second)
    }
    assert under[first.context.span_id] == [f"step {before.step.name}"]
    assert under[second.context.span_id] == [f"step {after.step.name}"]


def test_a_run_woken_by_a_signal_stays_in_its_trace(make_app, spans):
    app = make_app()

    @app.workflow()
    def waiter() -> str:
        return baton.wait_for_signal("go")

    handle = app.start(waiter)
    wait_until(lambda: app.get_run(handle.id).status == RunStatus.WAITING, what="WAITING")
    app.signal(handle.id, "go", "went")
    assert _result(handle) == "went"
    runs = [s for s in _of_run(spans, handle.id) if s.name == "run waiter"]
    assert len(runs) == 2
    assert runs[0].context.trace_id == runs[1].context.trace_id
    assert runs[0].context.trace_id == _trace_ids(app.get_run(handle.id).traceparent)[0]


def test_failed_attempts_record_their_exception(make_app, spans):
    app = make_app()
    calls: list[int] = []

    @app.step(retry=FAST)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"attempt {len(calls)} failed")
        return "third time lucky"

    @app.workflow()
    def retried() -> str:
        return flaky()

    @app.workflow()
    def crashes() -> None:
        raise ValueError("bad input")

    handle = app.start(retried)
    assert _result(handle) == "third time lucky"
    found = _of_run(spans, handle.id)
    runs = [s for s in found if s.name == "run retried"]
    attempts = [s for s in found if s.name == f"step {flaky.step.name}"]
    assert len(runs) == 3  # handed back for each back-off, claimed again: one trace
    assert len({s.context.trace_id for s in found}) == 1
    assert [s.attributes["baton.attempt"] for s in attempts] == [1, 2, 3]
    for failed in attempts[:2]:
        assert failed.status.status_code == StatusCode.ERROR
        assert "ConnectionError" in failed.status.description
        assert failed.attributes["baton.retry_delay"] == pytest.approx(0.01)
        (event,) = failed.events
        assert event.name == "exception"
        assert event.attributes["exception.type"] == "ConnectionError"
    assert attempts[2].status.status_code == StatusCode.UNSET

    crashed = app.start(crashes)
    with pytest.raises(baton.RunFailed):
        _result(crashed)
    (run_span,) = [s for s in _of_run(spans, crashed.id) if s.name == "run crashes"]
    assert run_span.status.status_code == StatusCode.ERROR
    assert run_span.events[0].attributes["exception.message"] == "bad input"


def test_gathered_steps_and_child_runs_join_the_parent_trace(make_app, spans):
    app = make_app()

    @app.step()
    def price(sku: str) -> int:
        return len(sku)

    @app.workflow()
    def label(sku: str) -> str:
        return sku.upper()

    @app.workflow()
    def quote(skus: list[str]) -> dict:
        a, b, tag = baton.gather(
            price.defer(skus[0]), price.defer(skus[1]), baton.child(label, "x")
        )
        return {"total": a + b, "label": tag}

    handle = app.start(quote, ["tea", "mugs"])
    assert _result(handle) == {"total": 7, "label": "X"}
    trace_id, _ = _trace_ids(app.get_run(handle.id).traceparent)
    found = _of_run(spans, handle.id)
    first = next(s for s in found if s.name == "run quote")
    prices = [s for s in found if s.name == f"step {price.step.name}"]
    assert len(prices) == 2
    for span in prices:
        assert span.parent.span_id == first.context.span_id and span.context.trace_id == trace_id
        assert span.start_time < span.end_time
    (child,) = app.store.list_children(handle.id)
    assert child.traceparent is None  # not stored: found through its parent
    (child_span,) = [s for s in _of_run(spans, child.run_id) if s.name == "run label"]
    assert child_span.context.trace_id == trace_id


def test_logs_carry_the_trace_and_span_ids(make_app, spans):
    app = make_app()
    stream = io.StringIO()
    configure_logging("INFO", stream)
    try:

        @app.step(retry=FAST)
        def flaky() -> str:
            if not getattr(flaky, "failed", False):
                flaky.failed = True
                raise ConnectionError("once")
            return "ok"

        @app.workflow()
        def logged() -> str:
            return flaky()

        handle = app.start(logged)
        assert _result(handle) == "ok"
    finally:
        configure_logging()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [line for line in lines if line.get("run_id") == handle.id]
    trace_id = app.get_run(handle.id).traceparent[3:35]
    found = _of_run(spans, handle.id)
    succeeded = next(line for line in mine if line["event"] == "run succeeded")
    assert succeeded["trace_id"] == trace_id
    last_run = [s for s in found if s.name == "run logged"][-1]
    assert succeeded["span_id"] == f"{last_run.context.span_id:016x}"
    retrying = next(line for line in mine if line["event"] == "step retrying")
    attempt = next(s for s in found if s.name == f"step {flaky.step.name}")
    assert retrying["trace_id"] == trace_id
    assert retrying["span_id"] == f"{attempt.context.span_id:016x}"  # the step's own span
    started = next(line for line in lines if line["event"] == "run started")
    assert started["trace_id"] == trace_id and "span_id" not in started  # outside any span


def test_without_a_provider_nothing_is_traced_but_the_run_keeps_a_traceparent(make_app):
    saved = tracing._own
    tracing.reset_tracing()
    try:
        assert tracing.tracer() is None  # the global provider is the API's no-op proxy
        app = make_app()

        @app.workflow()
        def plain() -> int:
            return 1

        handle = app.start(plain)
        assert _result(handle) == 1
        assert TRACEPARENT.match(app.get_run(handle.id).traceparent)
    finally:
        tracing._own = saved


def test_without_a_provider_log_lines_of_a_run_still_carry_its_trace_id(make_app):
    saved = tracing._own
    tracing.reset_tracing()
    stream = io.StringIO()
    configure_logging("INFO", stream)
    try:
        app = make_app()

        @app.workflow()
        def quiet() -> int:
            return 1

        handle = app.start(quiet)
        assert _result(handle) == 1
    finally:
        configure_logging()
        tracing._own = saved
    trace_id = app.get_run(handle.id).traceparent[3:35]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [line for line in lines if line.get("run_id") == handle.id]
    assert mine and all(line["trace_id"] == trace_id for line in mine)
    assert all("span_id" not in line for line in mine)  # no span records


def test_derived_traceparents_are_stable_and_valid():
    a = tracing.derived_traceparent("0190a0a0-0000-7000-8000-000000000001")
    assert a == tracing.derived_traceparent("0190a0a0-0000-7000-8000-000000000001")
    assert TRACEPARENT.match(a) and a.endswith("-01")
    assert a != tracing.derived_traceparent("0190a0a0-0000-7000-8000-000000000002")
    assert TRACEPARENT.match(tracing.new_traceparent())
