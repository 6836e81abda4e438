"""Sagas on real stores: compensations undo a failed or cancelled run's completed steps."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import baton
from baton.cli.main import app as cli_app
from baton.store import RunStatus
from conftest import wait_until

FAST = baton.Retry(max_attempts=2, initial=0.01, jitter=False)


def trip_app(make_app, variant: str, calls: list, **options: Any) -> baton.App:
    """Three bookings that each declare a compensation (by name, by function, sync and async),
    an uncompensated lookup between them, and a payment whose retries run out."""
    app = make_app(**options)

    @app.step(name="cancel_flight")
    def cancel_flight(trip: str, seat: str = "") -> str:
        ctx = baton.current_run()
        calls.append(("cancel_flight", trip, seat, ctx.seq, ctx.idempotency_key))
        return f"flight of {trip} cancelled"

    @app.step(name="book_flight", compensate="cancel_flight")
    def book_flight(trip: str, seat: str = "") -> str:
        calls.append(("book_flight", trip, seat))
        return f"F-{trip}"

    @app.step(name="lookup")
    def lookup(trip: str) -> str:
        calls.append(("lookup", trip))
        return "ok"

    # the compensation is registered after the step that names it
    @app.step(name="book_hotel", compensate="cancel_hotel")
    async def book_hotel(trip: str) -> str:
        calls.append(("book_hotel", trip))
        return f"H-{trip}"

    @app.step(name="cancel_hotel")
    async def cancel_hotel(trip: str) -> None:
        calls.append(("cancel_hotel", trip))

    @app.step(name="release_car")
    def release_car(trip: str) -> None:
        calls.append(("release_car", trip))

    @app.step(name="rent_car", compensate=release_car)  # the step function itself
    def rent_car(trip: str) -> str:
        calls.append(("rent_car", trip))
        return f"C-{trip}"

    @app.step(name="pay", retry=FAST)
    def pay(trip: str) -> None:
        calls.append(("pay", trip))
        raise RuntimeError(f"card declined for {trip}")

    if variant == "sync":

        @app.workflow(name="trip")
        def trip(name: str) -> str:
            book_flight(name, seat="12A")
            lookup(name)
            book_hotel(name)
            rent_car(name)
            pay(name)
            return "booked"

    else:

        @app.workflow(name="trip")
        async def trip(name: str) -> str:
            await book_flight(name, seat="12A")
            await lookup(name)
            await book_hotel(name)
            await rent_car(name)
            await pay(name)
            return "booked"

    return app


def event_types(app: baton.App, run_id: str) -> list[str]:
    return [e.type for e in app.events(run_id=run_id, limit=1000)]


def event_data(app: baton.App, run_id: str, type: str) -> list[dict]:
    return [json.loads(e.data) for e in app.events(run_id=run_id, type=type, limit=1000)]


def undone(calls: list) -> list[str]:
    names = {"cancel_flight", "cancel_hotel", "release_car"}
    return [c[0] for c in calls if c[0] in names]


@pytest.mark.parametrize("variant", ["sync", "async"])
def test_failure_after_retries_compensates_in_reverse_order(make_app, variant: str) -> None:
    calls: list = []
    app = trip_app(make_app, variant, calls)
    handle = app.start("trip", "rome")
    with pytest.raises(baton.RunFailed) as failed:
        handle.result(timeout=10)
    assert failed.value.status == RunStatus.COMPENSATED
    assert (failed.value.step, failed.value.attempts) == ("pay", 2)
    assert failed.value.error_type == "RuntimeError"
    assert failed.value.message == "card declined for rome"
    assert handle.status() == RunStatus.COMPENSATED

    assert undone(calls) == ["release_car", "cancel_hotel", "cancel_flight"]
    # same arguments as the step it undoes; inside it, the run context names the compensation
    assert ("cancel_flight", "rome", "12A", -1, f"{handle.id}:-1") in calls
    assert calls.count(("pay", "rome")) == 2

    steps = {s.seq: s for s in app.steps(handle.id)}
    assert json.loads(steps[1].input) == {"args": ["rome"], "kwargs": {"seat": "12A"}}
    assert steps[2].input is None  # lookup declares no compensation: nothing kept, nothing undone
    assert json.loads(steps[4].input) == {"args": ["rome"], "kwargs": {}}
    assert (steps[5].name, steps[5].status) == ("pay", "FAILED")
    marks = {seq: s for seq, s in steps.items() if s.kind == "compensation"}
    assert sorted(marks) == [-4, -3, -1]
    assert [(marks[s].name, marks[s].status, marks[s].attempts) for s in (-4, -3, -1)] == [
        ("release_car", "SUCCEEDED", 1),
        ("cancel_hotel", "SUCCEEDED", 1),
        ("cancel_flight", "SUCCEEDED", 1),
    ]
    assert json.loads(marks[-1].output) == "flight of rome cancelled"
    assert marks[-1].input == steps[1].input

    run = handle.info()
    assert json.loads(run.error)["message"] == "card declined for rome"  # the original error
    types = event_types(app, handle.id)
    assert "baton.run.dead" not in types and "baton.run.failed" not in types
    assert types.index("baton.step.failed") < types.index("baton.run.compensating")
    assert types[-1] == "baton.run.compensated"
    (compensating,) = event_data(app, handle.id, "baton.run.compensating")
    assert compensating["reason"] == "retries exhausted" and compensating["step"] == "pay"
    completed = event_data(app, handle.id, "baton.compensation.completed")
    assert [(d["step"], d["undoes"], d["seq"]) for d in completed] == [
        ("release_car", "rent_car", -4),
        ("cancel_hotel", "book_hotel", -3),
        ("cancel_flight", "book_flight", -1),
    ]


def test_an_uncaught_exception_compensates_only_completed_steps(make_app) -> None:
    app = make_app()
    calls: list[str] = []

    @app.step(name="charge", compensate="refund")
    def charge(order: str) -> str:
        calls.append(f"charge {order}")
        return "r-1"

    @app.step(name="refund")
    def refund(order: str) -> None:
        calls.append(f"refund {order}")

    @app.step(name="ship", compensate="unship")
    def ship(order: str) -> str:  # never reached
        calls.append(f"ship {order}")
        return "t-1"

    @app.step(name="unship")
    def unship(order: str) -> None:
        calls.append(f"unship {order}")

    @app.workflow()
    def order(order_id: str) -> str:
        charge(order_id)
        if order_id.startswith("bad"):
            raise ValueError(f"bad address for {order_id}")
        return ship(order_id)

    handle = app.start(order, "bad-1")
    with pytest.raises(baton.RunFailed) as failed:
        handle.result(timeout=10)
    assert failed.value.status == RunStatus.COMPENSATED
    assert failed.value.error_type == "ValueError"
    assert calls == ["charge bad-1", "refund bad-1"]
    (compensating,) = event_data(app, handle.id, "baton.run.compensating")
    assert compensating["reason"] == "failed"
    assert compensating["error"]["message"] == "bad address for bad-1"
    assert app.start(order, "good-1").result(timeout=10) == "t-1"  # success: nothing undone
    assert "unship good-1" not in calls


def test_a_compensation_that_fails_once_is_retried_after_its_backoff(make_app) -> None:
    clock = baton.VirtualClock(start=1000.0)
    app = make_app(clock=clock)
    calls: list[str] = []

    @app.step(name="reserve", compensate="release")
    def reserve(item: str) -> str:
        calls.append(f"reserve {item}")
        return item

    @app.step(name="release", retry=baton.Retry(max_attempts=3, initial=30, jitter=False))
    def release(item: str) -> None:
        calls.append(f"release {item}")
        if item == "b" and calls.count("release b") == 1:
            raise ConnectionError("warehouse unreachable")

    @app.workflow()
    def stock() -> None:
        reserve("a")
        reserve("b")
        raise RuntimeError("out of money")

    handle = app.start(stock)
    wait_until(
        lambda: handle.info().status == "COMPENSATING" and calls.count("release b") == 1,
        what="the first compensation attempt to fail",
    )
    wait_until(lambda: handle.info().owner is None, what="the run to be handed back")
    run = handle.info()
    assert run.status == "COMPENSATING"  # waiting out the back-off, still compensating
    assert run.available_at == pytest.approx(1030.0)
    (retrying,) = event_data(app, handle.id, "baton.compensation.retrying")
    assert (retrying["step"], retrying["undoes"], retrying["attempt"]) == ("release", "reserve", 1)
    assert retrying["delay"] == 30 and retrying["error"]["type"] == "ConnectionError"
    mark = {s.seq: s for s in app.steps(handle.id)}[-2]
    assert (mark.status, mark.attempts) == ("RETRYING", 1)

    clock.advance(30)
    with pytest.raises(baton.RunFailed) as failed:
        handle.result(timeout=10)
    assert failed.value.status == RunStatus.COMPENSATED
    assert calls == ["reserve a", "reserve b", "release b", "release b", "release a"]
    marks = {s.seq: s for s in app.steps(handle.id) if s.kind == "compensation"}
    assert [(marks[s].status, marks[s].attempts) for s in (-2, -1)] == [
        ("SUCCEEDED", 2),
        ("SUCCEEDED", 1),
    ]


def test_a_compensation_that_exhausts_its_retries_ends_dead_and_redrive_resumes_it(
    make_app,
) -> None:
    app = make_app()
    calls: list[str] = []
    fixed = threading.Event()

    @app.step(name="do", compensate="undo")
    def do(n: int) -> int:
        calls.append(f"do {n}")
        return n

    @app.step(name="undo", retry=FAST)
    def undo(n: int) -> None:
        calls.append(f"undo {n}")
        if n == 2 and not fixed.is_set():
            raise RuntimeError(f"cannot undo {n}")

    @app.workflow()
    async def three() -> None:
        for n in (1, 2, 3):
            await do(n)
        raise KeyError("boom")

    handle = app.start(three)
    with pytest.raises(baton.RunFailed) as failed:
        handle.result(timeout=10)
    err = failed.value
    assert err.status == RunStatus.DEAD
    assert err.error_type == "baton.core.errors.CompensationFailed"
    assert (err.step, err.attempts) == ("undo", 2)
    assert "compensation 'undo' of step 'do' (#2) failed after 2 attempt(s)" in err.message
    assert "RuntimeError: cannot undo 2" in err.message
    assert err.cause["type"] == "KeyError"  # what started the compensation
    doc = json.loads(handle.info().error)
    assert doc["compensation"] == {"step": "undo", "undoes": "do", "seq": -2}
    assert "cannot undo 2" in doc["traceback"]
    assert calls == ["do 1", "do 2", "do 3", "undo 3", "undo 2", "undo 2"]
    marks = {s.seq: s for s in app.steps(handle.id) if s.kind == "compensation"}
    assert [(seq, m.status, m.attempts) for seq, m in sorted(marks.items())] == [
        (-3, "SUCCEEDED", 1),
        (-2, "FAILED", 2),
    ]
    types = event_types(app, handle.id)
    assert types[-2:] == ["baton.compensation.failed", "baton.run.dead"]
    assert app.dead_letters() and app.dead_letters()[0].run_id == handle.id

    fixed.set()
    app.redrive(handle.id)  # resumes the compensation, not the workflow
    with pytest.raises(baton.RunFailed) as again:
        handle.result(timeout=10)
    assert again.value.status == RunStatus.COMPENSATED
    assert again.value.error_type == "KeyError"  # the original error is back
    assert calls[6:] == ["undo 2", "undo 1"]  # undo 3 is not run again, nor any do
    marks = {s.seq: s for s in app.steps(handle.id) if s.kind == "compensation"}
    assert [(seq, m.status, m.attempts) for seq, m in sorted(marks.items())] == [
        (-3, "SUCCEEDED", 1),
        (-2, "SUCCEEDED", 1),
        (-1, "SUCCEEDED", 1),
    ]


def test_a_compensation_without_a_retry_policy_fails_at_once(make_app) -> None:
    app = make_app()
    attempts: list[int] = []

    @app.step(name="unlock")
    def unlock(door: str) -> None:
        attempts.append(1)
        raise PermissionError(f"{door} is jammed")

    @app.step(compensate=unlock)
    def lock(door: str) -> None:
        pass

    @app.workflow()
    def secure() -> None:
        lock("front")
        raise RuntimeError("alarm")

    handle = app.start(secure)
    with pytest.raises(baton.RunFailed) as failed:
        handle.result(timeout=10)
    assert failed.value.status == RunStatus.DEAD
    assert (failed.value.step, failed.value.attempts) == ("unlock", 1)
    assert failed.value.cause["message"] == "alarm"
    assert attempts == [1]


@pytest.mark.parametrize("variant", ["sync", "async"])
def test_cancelling_a_waiting_run_compensates_it(make_app, variant: str) -> None:
    app = make_app()
    calls: list[str] = []

    @app.step(name="hold", compensate="free")
    def hold(seat: str) -> str:
        calls.append(f"hold {seat}")
        return seat

    @app.step(name="free")
    async def free(seat: str) -> None:
        calls.append(f"free {seat}")

    if variant == "sync":

        @app.workflow(name="seats")
        def seats() -> Any:
            hold("1A")
            hold("1B")
            return baton.wait_for_signal("paid")

    else:

        @app.workflow(name="seats")
        async def seats() -> Any:
            await hold("1A")
            await hold("1B")
            return await baton.wait_for_signal("paid")

    handle = app.start("seats")
    wait_until(lambda: handle.status() == "WAITING", what="the run to wait for its signal")
    before = handle.info().fence
    cancelled = app.cancel(handle.id)
    assert cancelled.status == RunStatus.COMPENSATING and cancelled.fence == before + 1
    with pytest.raises(baton.RunFailed) as failed:
        handle.result(timeout=10)
    assert failed.value.status == RunStatus.COMPENSATED
    assert failed.value.error_type == "baton.core.errors.RunCancelled"
    assert calls == ["hold 1A", "hold 1B", "free 1B", "free 1A"]
    types = event_types(app, handle.id)
    assert "baton.run.cancelled" not in types
    (compensating,) = event_data(app, handle.id, "baton.run.compensating")
    assert compensating["reason"] == "cancelled" and compensating["previous"] == "WAITING"
    with pytest.raises(baton.InvalidState, match="cancel"):
        app.cancel(handle.id)


def test_cancelling_during_a_step_compensates_what_completed_and_records_nothing_more(
    make_app,
) -> None:
    app = make_app()
    calls: list[str] = []
    entered, release = threading.Event(), threading.Event()

    @app.step(name="do", compensate="undo")
    def do(n: int) -> int:
        calls.append(f"do {n}")
        if n == 2:
            entered.set()
            assert release.wait(10)
        return n

    @app.step(name="undo")
    def undo(n: int) -> None:
        calls.append(f"undo {n}")

    @app.workflow()
    def two() -> None:
        do(1)
        do(2)
        do(3)

    handle = app.start(two)
    assert entered.wait(10)
    assert app.cancel(handle.id).status == RunStatus.COMPENSATING
    with pytest.raises(baton.RunFailed) as failed:
        handle.result(timeout=10)  # compensated while step 2 is still running
    assert failed.value.status == RunStatus.COMPENSATED
    release.set()
    wait_until(lambda: app._runtime.active_count() == 0, what="the cancelled step to finish")
    assert calls == ["do 1", "do 2", "undo 1"]  # step 2 had no checkpoint: not undone
    steps = app.steps(handle.id)
    assert [(s.seq, s.kind, s.status) for s in steps] == [
        (-1, "compensation", "SUCCEEDED"),
        (1, "step", "SUCCEEDED"),
    ]
    assert handle.status() == RunStatus.COMPENSATED


def test_a_compensating_run_cannot_be_cancelled(make_app) -> None:
    app = make_app()
    entered, release = threading.Event(), threading.Event()

    @app.step(name="undo")
    def undo() -> None:
        entered.set()
        assert release.wait(10)

    @app.step(compensate=undo)
    def do() -> None:
        pass

    @app.workflow()
    def wf() -> None:
        do()
        raise RuntimeError("no")

    handle = app.start(wf)
    assert entered.wait(10)
    with pytest.raises(baton.InvalidState, match="COMPENSATING"):
        app.cancel(handle.id)
    release.set()
    with pytest.raises(baton.RunFailed) as failed:
        handle.result(timeout=10)
    assert failed.value.status == RunStatus.COMPENSATED


def test_runs_without_compensable_completed_steps_end_as_before(make_app) -> None:
    app = make_app()

    @app.step()
    def plain(n: int) -> int:
        return n

    @app.step(retry=FAST)
    def flaky() -> None:
        raise ConnectionError("down")

    @app.step(compensate=plain)
    def late() -> None:  # declares a compensation, but is never reached
        pass

    @app.workflow()
    def fails() -> None:
        plain(1)
        raise ValueError("nope")
        late()

    @app.workflow()
    def dies() -> None:
        plain(1)
        flaky()
        late()

    @app.workflow()
    def waits() -> Any:
        plain(1)
        return baton.wait_for_signal("go")

    failed = app.start(fails)
    with pytest.raises(baton.RunFailed) as err:
        failed.result(timeout=10)
    assert err.value.status == RunStatus.FAILED and err.value.error_type == "ValueError"
    dead = app.start(dies)
    with pytest.raises(baton.RunFailed) as err:
        dead.result(timeout=10)
    assert err.value.status == RunStatus.DEAD and err.value.step.endswith("flaky")
    waiting = app.start(waits)
    wait_until(lambda: waiting.status() == "WAITING", what="the run to wait")
    assert app.cancel(waiting.id).status == RunStatus.CANCELLED
    with pytest.raises(baton.RunCancelled):
        waiting.result(timeout=10)
    for handle, ended in ((failed, "failed"), (dead, "dead"), (waiting, "cancelled")):
        types = event_types(app, handle.id)
        assert f"baton.run.{ended}" in types
        assert not [t for t in types if "compensat" in t]
        assert all(s.kind != "compensation" and s.input is None for s in app.steps(handle.id))


def test_an_unknown_compensation_is_a_definition_error(make_app, other_store_path) -> None:
    app = make_app()

    @app.step(name="charge", compensate="refund")
    def charge() -> None:
        pass

    @app.workflow()
    def wf() -> None:
        charge()

    with pytest.raises(baton.DefinitionError, match=r"'charge'.*'refund'"):
        app.launch()
    with pytest.raises(baton.DefinitionError, match="'refund'"):
        app.start(wf)
    assert app.runs() == []

    def stray() -> None:
        pass

    other = make_app(store=other_store_path)

    @other.step(name="pay", compensate=stray)  # a function never registered as a step
    def pay() -> None:
        pass

    with pytest.raises(baton.DefinitionError, match=r"'pay'.*stray"):
        other.launch()

    with pytest.raises(baton.DefinitionError, match="compensate="):
        app.step(compensate=42)


def test_a_compensation_function_registered_later_resolves(make_app) -> None:
    app = make_app()
    calls: list[str] = []

    def give_back(x: int) -> None:
        calls.append(f"give back {x}")

    @app.step(compensate=give_back)  # the plain function, made a step below
    def take(x: int) -> int:
        return x

    app.step(name="give_back")(give_back)

    @app.workflow()
    def wf() -> None:
        take(7)
        raise RuntimeError("x")

    with pytest.raises(baton.RunFailed) as failed:
        app.run(wf)
    assert failed.value.status == RunStatus.COMPENSATED
    assert calls == ["give back 7"]


def test_compensations_resume_after_a_restart_without_running_done_ones_again(
    make_app, store_path: Path
) -> None:
    calls: list[str] = []

    def define(app: baton.App) -> None:
        @app.step(name="do", compensate="undo")
        def do(n: int) -> int:
            calls.append(f"do {n}")
            return n

        @app.step(name="undo", retry=baton.Retry(max_attempts=3, initial=60, jitter=False))
        def undo(n: int) -> None:
            calls.append(f"undo {n}")
            if n == 2 and calls.count("undo 2") == 1:
                raise ConnectionError("later")

        @app.workflow(name="three")
        def three() -> None:
            for n in (1, 2, 3):
                do(n)
            raise RuntimeError("stop")

    first = make_app(clock=baton.VirtualClock(start=1000.0))
    define(first)
    handle = first.start("three")
    wait_until(lambda: calls.count("undo 2") == 1, what="the compensation of step 2 to fail")
    wait_until(lambda: handle.info().owner is None, what="its back-off to be recorded")
    first.shutdown()
    assert calls == ["do 1", "do 2", "do 3", "undo 3", "undo 2"]

    second = make_app(clock=baton.VirtualClock(start=1061.0))  # past the back-off
    define(second)
    second.launch()
    run = wait_until(
        lambda: (r := second.get_run(handle.id)).status == "COMPENSATED" and r,
        what="the run to be compensated by the second app",
    )
    assert json.loads(run.error)["message"] == "stop"
    assert calls[5:] == ["undo 2", "undo 1"]  # undo 3 had its checkpoint: not run again


def test_runs_show_prints_the_compensation_log(make_app, store_path: Path) -> None:
    app = make_app()

    @app.step(name="refund")
    def refund(order: str) -> None:
        pass

    @app.step(name="charge", compensate="refund")
    def charge(order: str) -> str:
        return "r-1"

    @app.step(name="reserve", compensate="release")
    def reserve(order: str) -> str:
        return "h-1"

    @app.step(name="release", retry=FAST)
    def release(order: str) -> None:
        raise RuntimeError("stock system down")

    @app.workflow()
    def checkout(order: str) -> None:
        charge(order)
        reserve(order)
        raise ValueError("address rejected")

    handle = app.start(checkout, "o-9")
    with pytest.raises(baton.RunFailed):
        handle.result(timeout=10)
    app.shutdown()

    runner = CliRunner(env={"BATON_STORE": None, "FORCE_COLOR": None, "TTY_COMPATIBLE": None})
    shown = runner.invoke(cli_app, ["--store", str(store_path), "runs", "show", handle.id])
    assert shown.exit_code == 0, shown.output
    out = shown.stdout
    assert "compensations (1)" in out and "steps (2)" in out
    log = out[out.index("compensations (1)") :]
    for text in ("release", "undoes", "reserve (#2)", "FAILED", "RuntimeError: stock system"):
        assert text in log
    assert "ValueError: address rejected" in log  # what started the compensation

    as_json = runner.invoke(
        cli_app, ["--store", str(store_path), "runs", "show", handle.id, "--json"]
    )
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.stdout)
    assert [s["seq"] for s in doc["steps"]] == [1, 2]
    (mark,) = doc["compensations"]
    assert mark["name"] == "release" and mark["status"] == "FAILED" and mark["attempts"] == 2
    assert mark["undoes"] == {"seq": 2, "step": "reserve"}
    assert mark["error"]["message"] == "stock system down"
    assert mark["started_at"].endswith("Z") and mark["finished_at"].endswith("Z")
    assert doc["run"]["error"]["cause"]["message"] == "address rejected"
