"""Engine behaviour on real stores (SQLite, PostgreSQL): sync and async workflows, retries,
DLQ, timeouts..."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import baton
from baton.store import RunStatus
from conftest import wait_until


def test_sync_workflow_checkpoints_each_step(make_app) -> None:
    app = make_app()

    @app.step()
    def add(x: int, y: int) -> int:
        return x + y

    @app.workflow()
    def total(values: list[int]) -> int:
        acc = 0
        for v in values:
            acc = add(acc, v)
        return acc

    handle = app.start(total, [1, 2, 3])
    assert handle.result(timeout=10) == 6
    assert handle.status() == RunStatus.SUCCEEDED
    steps = app.steps(handle.id)
    assert [(s.seq, s.name, s.status, json.loads(s.output)) for s in steps] == [
        (1, "test_sync_workflow_checkpoints_each_step.<locals>.add", "SUCCEEDED", 1),
        (2, "test_sync_workflow_checkpoints_each_step.<locals>.add", "SUCCEEDED", 3),
        (3, "test_sync_workflow_checkpoints_each_step.<locals>.add", "SUCCEEDED", 6),
    ]
    assert all(s.args_hash for s in steps)


def test_async_workflow_with_sync_and_async_steps(make_app) -> None:
    app = make_app()

    @app.step(name="fetch")
    async def fetch(n: int) -> int:
        await asyncio.sleep(0)
        return n * 10

    @app.step(name="blocking")
    def blocking(n: int) -> int:
        time.sleep(0.001)
        return n + 1

    @app.workflow(name="mixed")
    async def mixed(n: int) -> dict:
        a = await fetch(n)
        b = await blocking(a)
        return {"a": a, "b": b}

    assert app.run("mixed", 4) == {"a": 40, "b": 41}


def test_sync_workflow_can_call_async_step(make_app) -> None:
    app = make_app()

    @app.step()
    async def twice(n: int) -> int:
        return 2 * n

    @app.workflow()
    def wf(n: int) -> int:
        return twice(n) + 1

    assert wf(5) == 11  # calling a workflow function starts a run and waits


def test_steps_outside_a_run_are_plain_calls(make_app) -> None:
    app = make_app()

    @app.step()
    def inc(x: int) -> int:
        return x + 1

    assert inc(1) == 2


def test_retries_follow_the_backoff_on_the_virtual_clock(make_app) -> None:
    clock = baton.VirtualClock(start=1000.0)
    app = make_app(clock=clock)
    attempts: list[float] = []

    @app.step(retry=baton.Retry(max_attempts=4, initial=10, backoff=3, max_delay=600, jitter=False))
    def flaky() -> str:
        attempts.append(clock.now())
        if len(attempts) < 4:
            raise ConnectionError(f"try {len(attempts)}")
        return "ok"

    @app.workflow()
    def wf() -> str:
        return flaky()

    handle = app.start(wf)
    for k, expected_delay in enumerate((10, 30, 90), start=1):
        wait_until(
            lambda k=k: len(attempts) == k and handle.info().status == "ENQUEUED",
            what=f"failed attempt {k} to be recorded",
        )
        assert handle.info().available_at == pytest.approx(clock.now() + expected_delay)
        time.sleep(0.05)
        assert handle.info().status == "ENQUEUED"  # nothing runs before the back-off ends
        clock.advance(expected_delay)
    assert handle.result(timeout=10) == "ok"
    assert attempts == [1000.0, 1010.0, 1040.0, 1130.0]
    retrying = app.events(run_id=handle.id, type="baton.step.retrying")
    assert [json.loads(e.data)["delay"] for e in retrying] == [10, 30, 90]
    (step,) = app.steps(handle.id)
    assert step.attempts == 4 and step.status == "SUCCEEDED"


def test_pending_backoff_survives_a_restart(make_app, store_path: Path) -> None:
    clock = baton.VirtualClock(start=0.0)
    app = make_app(clock=clock)
    state = {"fail": True}

    def define(app: baton.App) -> None:
        @app.step(name="charge", retry=baton.Retry(max_attempts=3, initial=60, jitter=False))
        def charge() -> str:
            if state["fail"]:
                raise TimeoutError("gateway slow")
            return "charged"

        @app.workflow(name="pay")
        def pay() -> str:
            return charge()

    define(app)
    handle = app.start("pay")
    wait_until(lambda: app.steps(handle.id) and handle.info().status == "ENQUEUED")
    app.shutdown()

    state["fail"] = False
    app2 = make_app(clock=clock)
    define(app2)
    app2.launch()
    time.sleep(0.1)
    assert app2.handle(handle.id).status() == "ENQUEUED"  # still waiting out its back-off
    clock.advance(60)
    assert app2.handle(handle.id).result(timeout=10) == "charged"


def test_exhausted_retries_send_the_run_to_the_dead_letter_queue(make_app) -> None:
    app = make_app()
    broken = {"on": True}

    @app.step(name="ship", retry=baton.Retry(max_attempts=3, initial=0.001, jitter=False))
    def ship(order: str) -> str:
        if broken["on"]:
            raise RuntimeError(f"carrier down for {order}")
        return f"shipped {order}"

    @app.step(name="reserve")
    def reserve(order: str) -> str:
        reserve.calls += 1  # type: ignore[attr-defined]
        return f"reserved {order}"

    reserve.calls = 0  # type: ignore[attr-defined]

    @app.workflow(name="fulfil")
    def fulfil(order: str) -> list[str]:
        return [reserve(order), ship(order)]

    handle = app.start("fulfil", "o-1")
    with pytest.raises(baton.RunFailed) as info:
        handle.result(timeout=10)
    err = info.value
    assert err.status == "DEAD" and err.step == "ship" and err.attempts == 3
    assert err.error_type == "RuntimeError" and "carrier down for o-1" in err.message
    assert "Traceback" in err.traceback
    assert [r.run_id for r in app.dead_letters()] == [handle.id]
    assert app.events(run_id=handle.id, type="baton.run.dead")

    broken["on"] = False
    app.redrive(handle.id)
    assert handle.result(timeout=10) == ["reserved o-1", "shipped o-1"]
    assert reserve.calls == 1  # the redriven run resumed at the failed step
    assert app.dead_letters() == []
    assert app.events(run_id=handle.id, type="baton.run.redriven")


def test_non_retryable_errors_fail_at_once_and_reach_the_workflow(make_app) -> None:
    app = make_app()
    calls = Counter()

    @app.step(retry=baton.Retry(max_attempts=5, initial=0.001, non_retryable=(ValueError,)))
    def validate(amount: int) -> int:
        calls["validate"] += 1
        if amount < 0:
            raise ValueError(f"negative amount {amount}")
        return amount

    @app.step(retry=baton.Retry(max_attempts=5, initial=0.001))
    def explicit() -> None:
        calls["explicit"] += 1
        raise baton.NonRetryableError("card blocked")

    @app.workflow()
    def caught(amount: int) -> str:
        try:
            validate(amount)
        except ValueError as exc:
            return f"rejected: {exc}"
        return "ok"

    @app.workflow()
    def uncaught() -> None:
        explicit()

    assert app.run(caught, -5) == "rejected: negative amount -5"
    assert calls["validate"] == 1
    with pytest.raises(baton.RunFailed) as info:
        app.run(uncaught)
    assert info.value.status == "FAILED" and info.value.step.endswith("explicit")
    assert info.value.attempts == 1 and calls["explicit"] == 1


def test_recorded_failure_is_raised_again_on_replay(make_app, store_path: Path) -> None:
    """A workflow that caught a step's error sees the same error after a restart."""
    clock = baton.VirtualClock()
    app = make_app(clock=clock)
    seen: list[str] = []

    @app.step(name="check")
    def check() -> None:
        raise KeyError("sku-9")

    @app.step(name="later", retry=baton.Retry(max_attempts=2, initial=5, jitter=False))
    def later() -> str:
        if len(seen) < 2:
            raise RuntimeError("not yet")
        return "done"

    @app.workflow(name="replay")
    def replay() -> str:
        try:
            check()
        except KeyError as exc:
            seen.append(repr(exc))
        return later()

    handle = app.start("replay")
    wait_until(lambda: handle.info().status == "ENQUEUED" and len(seen) == 1)
    clock.advance(5)
    assert handle.result(timeout=10) == "done"
    assert seen == ["KeyError('sku-9')", "KeyError('sku-9')"]


def test_step_timeout_counts_as_a_failed_attempt(make_app) -> None:
    app = make_app()
    release = threading.Event()

    @app.step(timeout=0.05, retry=baton.Retry(max_attempts=2, initial=0.001, jitter=False))
    def slow() -> None:
        release.wait(2)

    @app.step(timeout=0.05)
    async def slow_async() -> None:
        await asyncio.sleep(2)

    @app.workflow()
    def wf() -> None:
        slow()

    @app.workflow()
    async def awf() -> None:
        await slow_async()

    with pytest.raises(baton.RunFailed) as info:
        app.run(wf)
    release.set()
    assert info.value.status == "DEAD" and info.value.error_type == "baton.core.errors.StepTimeout"
    assert info.value.attempts == 2
    with pytest.raises(baton.RunFailed) as info:
        app.run(awf)
    assert info.value.status == "FAILED" and "within 0.05s" in info.value.message


def test_workflow_timeout_fails_the_run_and_cancels_its_step(make_app) -> None:
    app = make_app()
    interrupted = threading.Event()

    @app.step()
    async def nap() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            interrupted.set()
            raise

    @app.workflow(timeout=0.2)
    async def sleepy() -> None:
        await nap()

    handle = app.start(sleepy)
    with pytest.raises(baton.RunFailed) as info:
        handle.result(timeout=20)
    assert info.value.status == "FAILED" and "deadline" in info.value.message
    wait_until(interrupted.is_set, what="the in-flight step to be cancelled")
    assert app.steps(handle.id) == []  # the interrupted step left no checkpoint


def test_workflow_deadline_on_the_virtual_clock_expires_queued_runs(make_app) -> None:
    clock = baton.VirtualClock()
    app = make_app(clock=clock, worker=False)

    @app.workflow()
    def later() -> str:
        return "too late"

    handle = app.start(later, timeout=30)
    clock.advance(31)
    app.launch()
    with pytest.raises(baton.RunFailed) as info:
        handle.result(timeout=10)
    assert info.value.status == "FAILED"
    assert info.value.error_type == "baton.core.errors.WorkflowTimeout"
    assert info.value.message == "the run passed its deadline"
    assert app.steps(handle.id) == []  # it never ran


def test_idempotency_key_runs_the_work_once(make_app) -> None:
    app = make_app()
    calls = Counter()

    @app.step()
    def charge(order: str) -> str:
        calls[order] += 1
        return f"receipt-{order}"

    @app.workflow()
    def checkout(order: str) -> str:
        return charge(order)

    first = app.start(checkout, "o-1", idempotency_key="order-o-1")
    second = app.start(checkout, "o-1", idempotency_key="order-o-1")
    assert first.id == second.id and first.created and not second.created
    assert second.result(timeout=10) == "receipt-o-1"
    third = app.start(checkout, "o-1", idempotency_key="order-o-1")
    assert third.id == first.id and third.result(timeout=10) == "receipt-o-1"
    assert calls == {"o-1": 1}
    assert len(app.runs(workflow="checkout")) == 1


def test_cancel_a_queued_and_a_running_run(make_app) -> None:
    app = make_app(concurrency=1)
    entered, release = threading.Event(), threading.Event()
    after = Counter()

    @app.step()
    def block() -> None:
        entered.set()
        release.wait(5)

    @app.step()
    def next_step() -> None:
        after["ran"] += 1

    @app.workflow()
    def wf() -> None:
        block()
        next_step()

    running = app.start(wf)
    entered.wait(5)
    queued = app.start(wf)  # no free slot: stays ENQUEUED
    assert queued.status() == "ENQUEUED"
    assert app.cancel(queued.id).status == "CANCELLED"
    app.cancel(running.id)
    release.set()
    with pytest.raises(baton.RunCancelled):
        running.result(timeout=10)
    time.sleep(0.1)
    assert after["ran"] == 0
    assert running.status() == "CANCELLED" and queued.status() == "CANCELLED"
    with pytest.raises(baton.InvalidState, match="cancel"):
        app.cancel(running.id)
    assert app.events(run_id=running.id, type="baton.run.cancelled")


def test_cancel_an_async_run_interrupts_it(make_app) -> None:
    app = make_app()
    entered = threading.Event()

    @app.step()
    async def wait_forever() -> None:
        entered.set()
        await asyncio.sleep(30)

    @app.workflow()
    async def wf() -> None:
        await wait_forever()

    handle = app.start(wf)
    entered.wait(5)
    app.cancel(handle.id)
    with pytest.raises(baton.RunCancelled):
        handle.result(timeout=5)
    wait_until(lambda: app._runtime.active_count() == 0, what="the task to stop")


def test_divergence_fails_the_run_naming_the_step(make_app, store_path: Path) -> None:
    clock = baton.VirtualClock()
    app = make_app(clock=clock)

    def define(app: baton.App, reordered: bool) -> None:
        @app.step(name="a")
        def a() -> str:
            return "a"

        @app.step(name="b", retry=baton.Retry(max_attempts=2, initial=10, jitter=False))
        def b() -> str:
            raise RuntimeError("wait for the next attempt")

        @app.workflow(name="flow")
        def flow() -> list[str]:
            return [b(), a()] if reordered else [a(), b()]

    define(app, reordered=False)
    handle = app.start("flow")
    wait_until(lambda: handle.info().status == "ENQUEUED" and len(app.steps(handle.id)) == 2)
    app.shutdown()

    app2 = make_app(clock=clock)
    define(app2, reordered=True)  # the code changed: the steps now run in another order
    app2.launch()
    clock.advance(10)
    with pytest.raises(baton.RunFailed) as info:
        app2.handle(handle.id).result(timeout=10)
    assert info.value.error_type == "baton.core.errors.DivergenceError"
    assert "step #1" in info.value.message and "'a'" in info.value.message


def test_bad_input_is_refused_before_anything_is_stored(make_app) -> None:
    import datetime

    app = make_app()

    @app.workflow(name="wf")
    def wf(payload: dict) -> None:
        return None

    with pytest.raises(baton.UnknownWorkflow, match=r"'nope'.*registered: wf"):
        app.start("nope")
    with pytest.raises(baton.SerializationError) as info:
        app.start("wf", {"when": datetime.datetime(2026, 1, 1)})
    assert info.value.path == "$.args[0].when"
    with pytest.raises(baton.DefinitionError, match="already registered"):

        @app.workflow(name="wf")
        def wf_again() -> None:
            return None

    with pytest.raises(baton.DefinitionError, match="Retry"):
        app.step(retry=3)
    assert app.runs() == []


def test_unserializable_step_output_fails_the_step(make_app) -> None:
    app = make_app()

    @app.step(name="leaky")
    def leaky() -> object:
        return object()

    @app.workflow()
    def wf() -> None:
        leaky()

    with pytest.raises(baton.RunFailed) as info:
        app.run(wf)
    assert info.value.step == "leaky" and "not JSON-serializable" in info.value.message


def test_workflow_exception_fails_the_run(make_app) -> None:
    app = make_app()

    @app.workflow()
    def boom() -> None:
        raise LookupError("no such customer")

    with pytest.raises(baton.RunFailed) as info:
        app.run(boom)
    assert info.value.status == "FAILED" and info.value.step is None
    assert info.value.error_type == "LookupError" and info.value.message == "no such customer"


def test_priorities_order_the_queue(make_app) -> None:
    app = make_app(worker=False)
    order: list[int] = []

    @app.step()
    def record(p: int) -> None:
        order.append(p)

    @app.workflow()
    def wf(p: int) -> None:
        record(p)

    handles = [app.start(wf, p, priority=p) for p in (1, 5, 3, 9, 0)]
    worker = make_app(concurrency=1)
    worker.registry = app.registry
    worker.launch()
    for h in handles:
        h.result(timeout=10)
    assert order == [9, 5, 3, 1, 0]


def test_worker_concurrency_limit_is_respected(make_app) -> None:
    app = make_app(concurrency=3)
    lock = threading.Lock()
    running = {"now": 0, "max": 0}

    @app.step()
    def work() -> None:
        with lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        time.sleep(0.02)
        with lock:
            running["now"] -= 1

    @app.workflow()
    def wf() -> None:
        work()

    handles = [app.start(wf) for _ in range(12)]
    for h in handles:
        h.result(timeout=20)
    assert running["max"] == 3


def test_events_carry_correlation_ids(make_app) -> None:
    app = make_app()

    @app.step()
    def s() -> int:
        return 1

    @app.workflow()
    def wf() -> int:
        return s()

    handle = app.start(wf, correlation_id="corr-42")
    handle.result(timeout=10)
    events = app.events(run_id=handle.id)
    types = [e.type for e in events]
    assert types == [
        "baton.run.enqueued",
        "baton.run.started",
        "baton.step.completed",
        "baton.run.succeeded",
    ]
    assert {e.correlation_id for e in events} == {"corr-42"}
    assert [e.run_id for e in app.events(correlation_id="corr-42")] == [handle.id] * 4
    default = app.start(wf)
    default.result(timeout=10)
    assert default.info().correlation_id == default.id


def test_json_logs_carry_run_step_and_correlation(make_app) -> None:
    import io

    stream = io.StringIO()
    baton.configure_logging("INFO", stream)
    try:
        app = make_app()

        @app.step(name="charge", retry=baton.Retry(max_attempts=2, initial=0.001, jitter=False))
        def charge() -> None:
            if not charge.failed:  # type: ignore[attr-defined]
                charge.failed = True  # type: ignore[attr-defined]
                raise RuntimeError("flaky")

        charge.failed = False  # type: ignore[attr-defined]

        @app.workflow()
        def wf() -> None:
            charge()

        handle = app.start(wf, correlation_id="c-7")
        handle.result(timeout=10)
    finally:
        baton.configure_logging("WARNING")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    retrying = [r for r in lines if r["event"] == "step retrying"]
    assert retrying and retrying[0]["step"] == "charge"
    assert retrying[0]["run_id"] == handle.id and retrying[0]["correlation_id"] == "c-7"
    succeeded = [r for r in lines if r["event"] == "run succeeded"]
    assert succeeded[0]["run_id"] == handle.id and succeeded[0]["correlation_id"] == "c-7"


def test_graceful_shutdown_hands_back_unfinished_runs(make_app, store_path: Path) -> None:
    app = make_app()
    entered, release = threading.Event(), threading.Event()
    calls = Counter()

    def define(app: baton.App) -> None:
        @app.step(name="first")
        def first() -> str:
            calls["first"] += 1
            entered.set()
            release.wait(5)
            return "1"

        @app.step(name="second")
        def second() -> str:
            calls["second"] += 1
            return "2"

        @app.workflow(name="two")
        def two() -> str:
            return first() + second()

    define(app)
    handle = app.start("two")
    entered.wait(5)
    stopper = threading.Thread(target=app.shutdown, kwargs={"timeout": 10})
    stopper.start()
    time.sleep(0.05)
    release.set()
    stopper.join()
    run = baton.App(store_path, worker=False)
    info = run.get_run(handle.id)
    assert info.status == "ENQUEUED" and info.owner is None
    assert [s.name for s in run.steps(handle.id)] == ["first"]  # finished step was recorded
    run.shutdown()

    app2 = make_app()
    define(app2)
    app2.launch()
    assert app2.handle(handle.id).result(timeout=10) == "12"
    assert calls == {"first": 1, "second": 1}


def test_a_new_process_recovers_runs_of_a_dead_owner(make_app, store_path: Path) -> None:
    app = make_app(worker=False)

    @app.step()
    def s() -> str:
        return "ok"

    @app.workflow(name="wf")
    def wf() -> str:
        return s()

    handle = app.start("wf")
    # pretend a process that has since died owned the run
    app.store.write(
        lambda c: c.execute(
            "INSERT INTO workers VALUES ('ghost', ?, 999999999, 0, 0, ?, '[]')",
            (baton.engine.liveness.hostname(), time.time()),
        )
    ).result()
    app.store.write(
        lambda c: c.execute(
            "UPDATE runs SET status='RUNNING', owner='ghost', fence=1 WHERE run_id=?", (handle.id,)
        )
    ).result()
    app.launch()
    assert handle.result(timeout=10) == "ok"
    assert app.events(run_id=handle.id, type="baton.run.recovered")


def test_redrive_refuses_runs_that_are_not_dead_or_failed(make_app) -> None:
    app = make_app()

    @app.workflow()
    def ok() -> int:
        return 1

    handle = app.start(ok)
    handle.result(timeout=10)
    with pytest.raises(baton.InvalidState, match="redrive"):
        app.redrive(handle.id)
    with pytest.raises(baton.RunNotFound):
        app.redrive("0190c0de-0000-7000-8000-000000000000")


def test_run_listing_takes_statuses_in_any_case(make_app) -> None:
    app = make_app()

    @app.workflow()
    def ok() -> int:
        return 1

    handle = app.start(ok)
    handle.result(timeout=10)
    assert [r.run_id for r in app.runs(status="succeeded")] == [handle.id]
    assert app.runs(status=["DEAD", "failed"]) == []
    with pytest.raises(ValueError, match="unknown run status 'done'"):
        app.runs(status="done")


def test_result_timeout_says_where_the_run_is(make_app) -> None:
    app = make_app(worker=False)

    @app.workflow()
    def never() -> None:
        return None

    handle = app.start(never)
    with pytest.raises(baton.ResultTimeout, match="ENQUEUED"):
        handle.result(timeout=0.05)


def test_current_run_gives_steps_a_stable_idempotency_key(make_app) -> None:
    app = make_app()
    seen: list[baton.RunContext] = []

    @app.step(name="charge", retry=baton.Retry(max_attempts=2, initial=0.001, jitter=False))
    def charge() -> str:
        ctx = baton.current_run()
        seen.append(ctx)
        if len(seen) == 1:
            raise ConnectionError("retry me")
        return ctx.idempotency_key

    @app.workflow(name="pay")
    def pay() -> tuple:
        before = baton.current_run()
        return before.step, charge()

    handle = app.start("pay", correlation_id="c-1")
    assert handle.result(timeout=10) == [None, f"{handle.id}:1"]
    assert [(c.step, c.seq, c.attempt) for c in seen] == [("charge", 1, 1), ("charge", 1, 2)]
    assert seen[0].idempotency_key == seen[1].idempotency_key
    assert seen[0].correlation_id == "c-1" and seen[0].workflow == "pay"
    assert baton.current_run() is None


def test_start_async_commits_without_blocking_the_loop(make_app) -> None:
    app = make_app()

    @app.step()
    def inc(x: int) -> int:
        return x + 1

    @app.workflow(name="incr")
    def incr(x: int) -> int:
        return inc(x)

    async def main() -> tuple[baton.RunHandle, baton.RunHandle, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        beat = asyncio.create_task(ticker())
        first = await app.start_async("incr", 41, idempotency_key="k-async")
        again = await app.start_async("incr", 0, idempotency_key="k-async")
        beat.cancel()
        return first, again, ticks

    first, again, ticks = asyncio.run(main())
    assert first.created and not again.created and again.id == first.id
    assert first.record is not None and first.record.run_id == first.id
    assert first.result(timeout=10) == 42
    assert ticks > 0  # the loop ran while the commits were made
    with pytest.raises(baton.UnknownWorkflow):
        asyncio.run(app.start_async("nope"))


def test_run_executes_a_sync_workflow_in_the_calling_thread(make_app) -> None:
    app = make_app()

    @app.step()
    def where() -> str:
        return threading.current_thread().name

    @app.workflow()
    def sync_wf() -> str:
        return where()

    @app.step()
    async def where_async() -> str:
        return threading.current_thread().name

    @app.workflow()
    async def async_wf() -> str:
        return await where_async()

    assert app.run(sync_wf) == threading.current_thread().name
    assert app.run(async_wf) == threading.current_thread().name  # on a loop of its own
    assert app.run(async_wf) == threading.current_thread().name  # the same loop, again

    async def inside_a_loop() -> str:  # a loop runs here already: the runtime's loop runs it
        return app.run(async_wf)

    assert asyncio.run(inside_a_loop()) != threading.current_thread().name
    (done, *_) = app.runs(workflow="sync_wf")
    assert done.status == RunStatus.SUCCEEDED
    assert done.output == json.dumps(threading.current_thread().name)
    assert [e.type for e in app.events(run_id=done.run_id)] == [
        "baton.run.enqueued",
        "baton.run.started",
        "baton.step.completed",
        "baton.run.succeeded",
    ]


def test_run_without_a_free_slot_waits_for_a_worker(make_app) -> None:
    app = make_app(concurrency=1)
    release = threading.Event()

    @app.step()
    def hold() -> None:
        release.wait(10)

    @app.workflow()
    def blocker() -> None:
        hold()

    @app.step()
    def where() -> str:
        return threading.current_thread().name

    @app.workflow()
    def wf() -> str:
        return where()

    held = app.start(blocker)
    wait_until(lambda: held.status() == "RUNNING")
    threading.Timer(0.2, release.set).start()
    assert app.run(wf) != threading.current_thread().name  # queued, then taken by a worker
    held.result(timeout=10)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_run_interrupted_in_the_calling_thread_is_handed_back(make_app, flavour: str) -> None:
    app = make_app()
    calls: list[int] = []

    def once_interrupted(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return x * 2

    if flavour == "sync":
        step = app.step(name="once_interrupted")(once_interrupted)

        @app.workflow(name="wf")
        def wf(x: int) -> int:
            return step(x)

    else:

        @app.step(name="once_interrupted")
        async def async_step(x: int) -> int:
            return once_interrupted(x)

        @app.workflow(name="wf")
        async def wf(x: int) -> int:  # type: ignore[misc]
            return await async_step(x)

    with pytest.raises(KeyboardInterrupt):
        app.run(wf, 21)
    if flavour == "async":  # this thread's loop is sound for the next run
        assert app.run(wf, 1) == 2
    run = min(app.runs(workflow="wf"), key=lambda r: r.run_id)  # the first one
    # handed back to the queue, then executed again by a worker of this process
    assert app.handle(run.run_id).result(timeout=10) == 42
    assert calls.count(21) == 2
    suspended = app.events(run_id=run.run_id, type="baton.run.suspended")
    assert [json.loads(e.data)["reason"] for e in suspended] == ["interrupted"]


def test_waiting_for_a_run_on_the_worker_loop_is_refused(make_app) -> None:
    # app.run or handle.result in an async workflow would block the loop that runs it, every
    # other async run, and the awaited run itself when it is async: refused, nothing started
    app = make_app()

    @app.step()
    async def inc(x: int) -> int:
        return x + 1

    @app.workflow()
    async def child(x: int) -> int:
        return await inc(x)

    @app.workflow()
    async def runs_inline(x: int) -> int:
        return app.run(child, x)

    @app.workflow()
    async def waits_on_handle(run_id: str) -> int:
        return app.handle(run_id).result(timeout=5)

    @app.workflow()
    async def as_a_child(x: int) -> int:
        return await baton.run_child(child, x)

    with pytest.raises(baton.RunFailed) as refused:  # started: executed on the worker's loop
        app.start(runs_inline, 1).result(timeout=10)
    assert refused.value.error_type == "baton.core.errors.BlockingOnWorkerLoop"
    assert "baton.run_child" in (refused.value.message or "")
    assert app.runs(workflow="child") == []  # app.run refused before starting anything

    other = app.start(child, 5)
    with pytest.raises(baton.RunFailed) as refused:
        app.start(waits_on_handle, other.id).result(timeout=10)
    assert refused.value.error_type == "baton.core.errors.BlockingOnWorkerLoop"
    # the loop kept serving async runs
    assert other.result(timeout=10) == 6
    assert app.start(as_a_child, 2).result(timeout=10) == 3


def test_a_callers_own_loop_is_closed_with_its_thread_and_at_shutdown(make_app) -> None:
    import gc

    app = make_app()

    @app.step()
    async def loop_of_this_thread() -> int:
        return id(asyncio.get_running_loop())

    @app.workflow()
    async def wf() -> int:
        return await loop_of_this_thread()

    runtime = app._runtime if app._runtime is not None else app.launch()._runtime
    seen: list[int] = []
    worker = threading.Thread(target=lambda: seen.append(app.run(wf)))
    worker.start()
    worker.join()
    (from_thread,) = [loop for loop in runtime._own_loops if id(loop) == seen[0]]
    assert app.run(wf) != seen[0]  # this thread has a loop of its own
    (here,) = [loop for loop in runtime._own_loops if loop is not from_thread]
    del worker
    gc.collect()  # the ended thread's locals go, and its loop is closed with them
    assert from_thread.is_closed() and not here.is_closed()
    app.shutdown()
    assert here.is_closed()


def test_run_threads_reuse_idle_threads_up_to_the_limit_and_drop_queued_runs_on_shutdown() -> None:
    """Sync runs' threads: an idle thread takes the next run; no more than `limit` threads;
    a shutdown drops the runs not taken yet, waits for those under way, refuses new ones."""
    import threading
    import time

    from baton.engine.run_threads import RunThreads

    threads = RunThreads(2, "test-run")
    ran: list[tuple[int, str]] = []
    release = threading.Event()

    def run(n: int, block: bool = False) -> None:
        ran.append((n, threading.current_thread().name))
        if block:
            release.wait(5)

    threads.submit(lambda: run(1))
    deadline = time.monotonic() + 5
    while threads._idle < 1 and time.monotonic() < deadline:  # ran, and is idle again
        time.sleep(0.005)
    assert ran == [(1, ran[0][1])]
    threads.submit(lambda: run(2))
    while len(ran) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert ran[0][1] == ran[1][1]  # the idle thread took it: no second thread
    threads.submit(lambda: run(3, block=True))
    threads.submit(lambda: run(4, block=True))
    threads.submit(lambda: run(5))  # both threads busy, and no third: it waits
    while len(ran) < 4 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    assert sorted(n for n, _ in ran) == [1, 2, 3, 4]
    assert len({name for _, name in ran}) == 2
    stopper = threading.Thread(target=threads.shutdown)
    stopper.start()
    time.sleep(0.05)
    assert stopper.is_alive()  # waits for the runs under way
    release.set()
    stopper.join(5)
    assert not stopper.is_alive()
    assert sorted(n for n, _ in ran) == [1, 2, 3, 4]  # run 5 was dropped, never started
    with pytest.raises(RuntimeError):
        threads.submit(lambda: run(6))


def test_loop_handoff_wakes_the_loop_once_per_batch() -> None:
    """Outcomes resolved by another thread reach their waiters on the loop with one wake-up
    for all that came before it ran; errors arrive as errors; cancelling a waiter leaves the
    Future alone; a closed loop takes no calls."""
    import asyncio
    import threading
    from concurrent.futures import Future

    from baton.engine import loop_handoff

    loop = asyncio.new_event_loop()
    wakeups: list[object] = []
    original = loop.call_soon_threadsafe

    def counted(callback: Any, *args: Any, **kwargs: Any) -> Any:
        wakeups.append(callback)
        return original(callback, *args, **kwargs)

    loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
    futures = [Future() for _ in range(5)]
    ran: list[str] = []

    async def main() -> tuple[list[Any], bool]:
        waiters = [loop_handoff.awaitable(f, loop) for f in futures]
        abandoned = Future()
        task = asyncio.ensure_future(loop_handoff.awaitable(abandoned, loop))

        def resolve_all() -> None:  # one burst, as a commit resolves its group
            for i, f in enumerate(futures[:-1]):
                f.set_result(i)
            futures[-1].set_exception(ValueError("lost"))
            loop_handoff.call_soon(loop, lambda: ran.append("called"))

        worker = threading.Thread(target=resolve_all)
        worker.start()
        worker.join()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        task.cancel()
        await asyncio.sleep(0)
        return results, abandoned.cancelled()

    results, cancelled = loop.run_until_complete(main())
    assert results[:4] == [0, 1, 2, 3] and isinstance(results[4], ValueError)
    assert ran == ["called"] and not cancelled
    assert len(wakeups) == 1
    done = Future()
    done.set_result("at once")
    assert loop.run_until_complete(loop_handoff.awaitable(done, loop)) == "at once"
    pending = Future()
    waiter = loop_handoff.awaitable(pending, loop)
    loop.close()
    with pytest.raises(RuntimeError):
        loop_handoff.call_soon(loop, lambda: None)
    with pytest.raises(RuntimeError):  # closed after the check: told all the same
        loop_handoff._handoff(loop).add(lambda: None)
    pending.set_result("late")  # its waiter's loop is gone: dropped, nothing raised
    assert not waiter.done()


def test_a_run_handed_to_the_loop_takes_nothing_of_the_context_that_handed_it(make_app) -> None:
    """The batch that starts an async run on the worker's loop may be scheduled from any
    context, a step's included (its writes are committed where they are submitted): the run
    gets a context of its own, so `baton.gather` in it is not taken for a call in a step."""
    import contextvars

    from baton.engine import loop_handoff
    from baton.engine.execution import in_step

    app = make_app()

    @app.step()
    async def square(x: int) -> int:
        return x * x

    @app.workflow()
    async def fan(n: int) -> list[int]:
        return await baton.gather(*[square(i) for i in range(n)])

    marked = contextvars.copy_context()
    marked.run(in_step.set, ("somewhere", 1, 1))
    handles = marked.run(lambda: [app.start(fan, 3) for _ in range(5)])
    assert [h.result(timeout=30) for h in handles] == [[0, 1, 4]] * 5

    seen: list[object] = []
    loop = asyncio.new_event_loop()
    marked.run(loop_handoff.call_soon, loop, lambda: seen.append(in_step.get()))
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    assert seen == [None]  # the handed-over call does not run in the caller's context
