"""Child workflows, gather and map, on real stores (SQLite, PostgreSQL), in sync and async
workflows."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter

import pytest

import baton
from baton.store.records import NEVER, RunStatus, StepStatus
from conftest import wait_until

MODES = ["sync", "async"]


def _status(app: baton.App, run_id: str, status: str) -> bool:
    run = app.get_run(run_id)
    return run is not None and run.status == status


def _children(app: baton.App, run_id: str) -> list:
    return app.store.list_children(run_id)


# -- child workflows -------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_a_child_result_flows_to_the_parent(make_app, mode):
    app = make_app()

    @app.step()
    def double(x: int) -> int:
        return 2 * x

    @app.workflow()
    def leaf(x: int) -> int:
        return double(x)

    if mode == "async":

        @app.workflow()
        async def parent(x: int) -> list:
            handle = await baton.start_child(leaf, x)
            first = await handle.result()
            second = await baton.run_child("leaf", x + 1, priority=3)
            return [first, second, handle.id]
    else:

        @app.workflow()
        def parent(x: int) -> list:
            handle = baton.start_child(leaf, x)
            first = handle.result()
            second = baton.run_child("leaf", x + 1, priority=3)
            return [first, second, handle.id]

    run = app.start(parent, 5, correlation_id="order-5")
    first, second, child_id = run.result(timeout=10)
    assert (first, second) == (10, 12)
    kids = _children(app, run.id)
    assert len(kids) == 2 and kids[0].run_id == child_id
    assert [k.priority for k in kids] == [0, 3]
    for kid, seq in zip(kids, (1, 3), strict=True):
        assert kid.parent_run_id == run.id and kid.correlation_id == "order-5"
        assert kid.idempotency_key == f"{run.id}:{seq}" and kid.status == RunStatus.SUCCEEDED
    steps = [(s.seq, s.kind, s.status, json.loads(s.output)) for s in app.steps(run.id)]
    assert steps == [
        (1, "child", "SUCCEEDED", child_id),
        (2, "child_result", "SUCCEEDED", 10),
        (3, "child", "SUCCEEDED", kids[1].run_id),
        (4, "child_result", "SUCCEEDED", 12),
    ]
    started = app.events(run_id=run.id, type="baton.child.started")
    assert [json.loads(e.data)["child"] for e in started] == [child_id, kids[1].run_id]


@pytest.mark.parametrize("mode", MODES)
def test_a_failing_child_raises_into_the_parent(make_app, mode):
    app = make_app()

    @app.workflow()
    def broken(x: int) -> int:
        raise ValueError(f"no {x}")

    if mode == "async":

        @app.workflow()
        async def parent() -> dict:
            try:
                await baton.run_child(broken, 7)
            except baton.RunFailed as exc:
                return {"run": exc.run_id, "status": exc.status, "type": exc.error_type}
            return {}

        @app.workflow()
        async def careless() -> int:
            return await baton.run_child(broken, 8)
    else:

        @app.workflow()
        def parent() -> dict:
            try:
                baton.run_child(broken, 7)
            except baton.RunFailed as exc:
                return {"run": exc.run_id, "status": exc.status, "type": exc.error_type}
            return {}

        @app.workflow()
        def careless() -> int:
            return baton.run_child(broken, 8)

    run = app.start(parent)
    caught = run.result(timeout=10)
    (kid,) = _children(app, run.id)
    assert caught == {"run": kid.run_id, "status": "FAILED", "type": "ValueError"}
    result = app.steps(run.id)[1]
    assert (result.kind, result.status) == ("child_result", StepStatus.FAILED)

    uncaught = app.start(careless)
    with pytest.raises(baton.RunFailed) as info:
        uncaught.result(timeout=10)
    assert info.value.error_type == "baton.core.errors.RunFailed"
    assert info.value.step == "baton.child_result:broken"


def test_a_child_cancelled_or_timed_out_on_its_own_wakes_its_parent(make_app):
    clock = baton.VirtualClock()
    app = make_app(clock=clock)

    @app.workflow()
    def listener() -> str:
        return baton.wait_for_signal("never")

    @app.workflow()
    def parent(timeout: float | None) -> str:
        try:
            return baton.run_child(listener, timeout=timeout)
        except baton.RunCancelled as exc:
            return f"cancelled {exc.run_id}"
        except baton.RunFailed as exc:
            return f"failed {exc.error_type}"

    cancelled = app.start(parent, None)
    timed_out = app.start(parent, 30)
    for run in (cancelled, timed_out):
        wait_until(lambda run=run: _status(app, run.id, RunStatus.WAITING), what="parent waits")
        wait_until(lambda run=run: _children(app, run.id), what="its child")
    (kid,) = _children(app, cancelled.id)
    app.cancel(kid.run_id)
    assert cancelled.result(timeout=10) == f"cancelled {kid.run_id}"
    clock.advance(31)
    assert timed_out.result(timeout=10) == "failed baton.core.errors.WorkflowTimeout"


@pytest.mark.parametrize("mode", MODES)
def test_a_parent_waiting_for_a_child_holds_no_worker_slot(make_app, mode):
    app = make_app(concurrency=1)
    entered, release = threading.Event(), threading.Event()

    @app.step()
    def slow() -> str:
        entered.set()
        release.wait(10)
        return "done"

    @app.workflow()
    def leaf() -> str:
        return slow()

    if mode == "async":

        @app.workflow()
        async def parent() -> str:
            return await baton.run_child(leaf)
    else:

        @app.workflow()
        def parent() -> str:
            return baton.run_child(leaf)

    run = app.start(parent)
    assert entered.wait(10), "the child never ran: the waiting parent kept the only slot"
    parent_row = app.get_run(run.id)
    assert parent_row.status == RunStatus.WAITING and parent_row.owner is None
    assert parent_row.available_at == NEVER
    (kid,) = _children(app, run.id)
    assert kid.status == RunStatus.RUNNING and app._runtime.active_count() == 1
    release.set()
    assert run.result(timeout=10) == "done"


def test_waiting_for_a_child_ends_at_the_parent_deadline(make_app):
    clock = baton.VirtualClock()
    app = make_app(clock=clock)

    @app.workflow()
    def listener() -> str:
        return baton.wait_for_signal("never")

    @app.workflow(timeout=60)
    def parent() -> str:
        return baton.run_child(listener)

    run = app.start(parent)
    wait_until(lambda: _status(app, run.id, RunStatus.WAITING))
    assert app.get_run(run.id).available_at == pytest.approx(clock.now() + 60)
    clock.advance(61)
    with pytest.raises(baton.RunFailed, match="deadline"):
        run.result(timeout=10)


@pytest.mark.parametrize("mode", MODES)
def test_cancelling_a_parent_cancels_its_children_and_grandchildren(make_app, mode):
    app = make_app()

    @app.workflow()
    def grandchild() -> str:
        return baton.wait_for_signal("never")

    @app.workflow()
    def middle() -> str:
        return baton.run_child(grandchild)

    if mode == "async":

        @app.workflow()
        async def top() -> list:
            return await baton.gather(baton.child(middle), baton.child(middle))
    else:

        @app.workflow()
        def top() -> list:
            return baton.gather(baton.child(middle), baton.child(middle))

    run = app.start(top)

    def family() -> list:
        kids = _children(app, run.id)
        grandkids = [g for k in kids for g in _children(app, k.run_id)]
        everyone = [app.get_run(run.id), *kids, *grandkids]
        if len(everyone) == 5 and all(r.status == RunStatus.WAITING for r in everyone):
            return everyone
        return []

    everyone = wait_until(family, what="parent, 2 children and 2 grandchildren all waiting")
    app.cancel(run.id)
    assert [app.get_run(r.run_id).status for r in everyone] == [RunStatus.CANCELLED] * 5
    for descendant in everyone[1:]:
        (event,) = app.events(run_id=descendant.run_id, type="baton.run.cancelled")
        assert json.loads(event.data)["reason"] == "parent cancelled"
    with pytest.raises(baton.RunCancelled):
        run.result(timeout=5)


# -- gather ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_gather_runs_steps_at_once_and_children_returning_results_in_order(make_app, mode):
    app = make_app()
    barrier = threading.Barrier(3)  # only passes if all three steps run at the same time

    @app.step()
    def meet(i: int) -> int:
        barrier.wait(10)
        return 10 * i

    @app.workflow()
    def leaf(x: int) -> str:
        return f"leaf {x}"

    if mode == "async":
        abarrier = asyncio.Barrier(2)

        @app.step()
        async def ameet(i: int) -> int:
            await asyncio.wait_for(abarrier.wait(), 10)
            return -i

        @app.workflow()
        async def fan() -> list:
            # a step called without await is a pending call gather takes
            first = await baton.gather(meet(1), baton.child(leaf, 2), meet(3), meet.defer(4))
            second = await baton.gather(ameet(1), ameet.defer(2))
            return [*first, *second]
    else:

        @app.workflow()
        def fan() -> list:
            return baton.gather(meet.defer(1), baton.child(leaf, 2), meet.defer(3), meet.defer(4))

    run = app.start(fan)
    expected = [10, "leaf 2", 30, 40] + ([-1, -2] if mode == "async" else [])
    assert run.result(timeout=20) == expected
    steps = {s.seq: (s.kind, json.loads(s.output)) for s in app.steps(run.id)}
    (kid,) = _children(app, run.id)
    assert steps[1] == ("step", 10) and steps[2] == ("child", kid.run_id)
    assert steps[3] == ("child_result", "leaf 2")
    assert steps[4] == ("step", 30) and steps[5] == ("step", 40)
    assert kid.idempotency_key == f"{run.id}:2"


@pytest.mark.parametrize("mode", MODES)
def test_gather_raises_the_first_failure_in_argument_order(make_app, mode):
    app = make_app()
    ran = Counter()

    @app.step()
    def ok(x: int) -> int:
        ran[x] += 1
        return x

    @app.step()
    def bad(message: str) -> int:
        raise KeyError(message)

    if mode == "async":

        @app.workflow()
        async def fan() -> str:
            try:
                await baton.gather(ok(1), bad("first"), bad("second"), ok(2))
            except KeyError as exc:
                return str(exc)
            return "no error"
    else:

        @app.workflow()
        def fan() -> str:
            try:
                baton.gather(ok.defer(1), bad.defer("first"), bad.defer("second"), ok.defer(2))
            except KeyError as exc:
                return str(exc)
            return "no error"

    run = app.start(fan)
    assert run.result(timeout=10) == "'first'"
    assert ran == {1: 1, 2: 1}  # the others ran, and were recorded
    assert [s.status for s in app.steps(run.id)] == ["SUCCEEDED", "FAILED", "FAILED", "SUCCEEDED"]


@pytest.mark.parametrize("mode", MODES)
def test_a_replay_after_a_restart_reuses_the_gather_checkpoints(make_app, mode):
    calls = Counter()

    def define(app: baton.App) -> None:
        @app.step(name="count")
        def count(x: int) -> int:
            calls[f"count {x}"] += 1
            return x

        @app.step(name="leaf_step")
        def leaf_step(x: int) -> int:
            calls[f"leaf {x}"] += 1
            return 100 * x

        @app.workflow(name="leaf")
        def leaf(x: int) -> int:
            return leaf_step(x)

        if mode == "async":

            @app.workflow(name="fan")
            async def fan() -> list:
                got = await baton.gather(count(1), baton.child(leaf, 2), count.defer(3))
                mapped = await baton.map(count, [4, 5], concurrency=1)
                return [*got, *mapped, await baton.wait_for_signal("go")]
        else:

            @app.workflow(name="fan")
            def fan() -> list:
                got = baton.gather(count.defer(1), baton.child(leaf, 2), count.defer(3))
                mapped = baton.map(count, [4, 5], concurrency=1)
                return [*got, *mapped, baton.wait_for_signal("go")]

    first = make_app()
    define(first)
    run_id = first.start("fan").id
    wait_until(lambda: any(s.kind == "signal" for s in first.steps(run_id)), what="the signal wait")
    first.shutdown()

    second = make_app()
    define(second)
    second.launch()
    second.signal(run_id, "go", "went")
    assert second.handle(run_id).result(timeout=10) == [1, 200, 3, 4, 5, "went"]
    assert calls == {f"count {x}": 1 for x in (1, 3, 4, 5)} | {"leaf 2": 1}
    assert len(_children(second, run_id)) == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_step_in_a_gather_retries_with_its_backoff(make_app, mode):
    clock = baton.VirtualClock(start=1000.0)
    app = make_app(clock=clock)
    calls = Counter()

    @app.step(retry=baton.Retry(max_attempts=3, initial=10, jitter=False))
    def quick(x: int) -> int:
        calls["quick"] += 1
        if calls["quick"] == 1:
            raise ConnectionError("quick failed once")
        return x

    @app.step(retry=baton.Retry(max_attempts=3, initial=100, max_delay=600, jitter=False))
    def slow(x: int) -> int:
        calls["slow"] += 1
        if calls["slow"] == 1:
            raise ConnectionError("slow failed once")
        return x

    @app.step()
    def steady(x: int) -> int:
        calls["steady"] += 1
        return x

    if mode == "async":

        @app.workflow()
        async def fan() -> list:
            return await baton.gather(quick(1), slow(2), steady(3))
    else:

        @app.workflow()
        def fan() -> list:
            return baton.gather(quick.defer(1), slow.defer(2), steady.defer(3))

    run = app.start(fan)

    def waiting_until(at: float) -> bool:
        row = app.get_run(run.id)
        return row.status == RunStatus.WAITING and row.available_at == pytest.approx(at)

    # one suspension for both back-offs, until the earliest one
    wait_until(lambda: waiting_until(1010.0), what="the run to wait for the quick retry")
    assert calls == {"quick": 1, "slow": 1, "steady": 1}
    clock.advance(10)
    # the quick step runs again; the slow one is not due yet, and is left alone
    wait_until(lambda: calls["quick"] == 2 and waiting_until(1100.0), what="the slow retry")
    assert calls == {"quick": 2, "slow": 1, "steady": 1}
    clock.advance(90)
    assert run.result(timeout=10) == [1, 2, 3]
    assert calls == {"quick": 2, "slow": 2, "steady": 1}
    assert [s.attempts for s in app.steps(run.id)] == [2, 2, 1]
    retrying = app.events(run_id=run.id, type="baton.step.retrying")
    assert sorted(json.loads(e.data)["delay"] for e in retrying) == [10, 100]
    waits = app.events(run_id=run.id, type="baton.run.waiting")
    assert [json.loads(e.data)["reason"] for e in waits] == ["gather", "gather"]


def test_retries_used_up_in_a_gather_send_the_run_to_the_dead_letter_queue(make_app):
    app = make_app()

    @app.step(retry=baton.Retry(max_attempts=1))
    def hopeless() -> None:
        raise ConnectionError("down")

    @app.step()
    def fine() -> int:
        return 1

    @app.workflow()
    def fan() -> list:
        return baton.gather(hopeless.defer(), fine.defer())

    run = app.start(fan)
    with pytest.raises(baton.RunFailed) as info:
        run.result(timeout=10)
    assert info.value.status == RunStatus.DEAD and info.value.step.endswith("hopeless")


def test_a_step_past_its_timeout_in_a_gather_fails_alone(make_app):
    app = make_app()
    release = threading.Event()

    @app.step(timeout=0.2)
    def stuck() -> None:
        release.wait(10)

    @app.step()
    def quick() -> int:
        return 1

    @app.workflow()
    def fan() -> str:
        try:
            baton.gather(quick.defer(), stuck.defer())
        except baton.StepTimeout as exc:
            return type(exc).__name__
        return "no timeout"

    run = app.start(fan)
    assert run.result(timeout=10) == "StepTimeout"
    release.set()
    assert [s.status for s in app.steps(run.id)] == ["SUCCEEDED", "FAILED"]


def test_gather_checkpoints_keep_their_argument_positions(make_app):
    """A replay matches each call to its checkpoint by position: calls in another order, after
    a code change, are a divergence, not a silent mix-up."""
    first = make_app()
    later = {"order": ("a", "b")}

    def define(app: baton.App) -> None:
        @app.step(name="a")
        def a() -> str:
            return "a"

        @app.step(name="b")
        def b() -> str:
            return "b"

        steps = {"a": a, "b": b}

        @app.workflow(name="fan")
        def fan() -> list:
            got = baton.gather(*(steps[name].defer() for name in later["order"]))
            return [*got, baton.wait_for_signal("go")]

    define(first)
    run_id = first.start("fan").id
    wait_until(lambda: _status(first, run_id, RunStatus.WAITING))
    assert [r.outcome for r in first.replay_check([run_id])] == ["ok"]
    first.shutdown()

    later["order"] = ("b", "a")
    second = make_app()
    define(second)
    (check,) = second.replay_check([run_id])
    assert (check.outcome, check.seq) == ("diverged", 1)
    second.signal(run_id, "go")
    with pytest.raises(baton.RunFailed) as info:
        second.handle(run_id).result(timeout=10)
    assert info.value.error_type == "baton.core.errors.DivergenceError"


def test_the_replay_check_reads_children_without_starting_any(make_app):
    app = make_app()

    @app.workflow()
    def leaf(x: int) -> int:
        return x + 1

    @app.workflow()
    def fan() -> list:
        got = baton.gather(baton.child(leaf, 1), baton.child(leaf, 2))
        return [*got, baton.run_child(leaf, 3), baton.wait_for_signal("go")]

    run = app.start(fan)
    wait_until(lambda: any(s.kind == "signal" for s in app.steps(run.id)))
    (check,) = app.replay_check([run.id])
    assert check.outcome == "ok", check
    assert len(_children(app, run.id)) == 3
    app.signal(run.id, "go", 0)
    assert run.result(timeout=10) == [2, 3, 4, 0]


# -- map -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "step_kind"),
    [("sync", "sync"), ("sync", "async"), ("async", "sync"), ("async", "async")],
)
def test_map_never_runs_more_than_its_concurrency_at_once(make_app, mode, step_kind):
    app = make_app()
    lock = threading.Lock()
    state = {"now": 0, "most": 0}

    def enter() -> None:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])

    def leave() -> None:
        with lock:
            state["now"] -= 1

    if step_kind == "async":
        pair = asyncio.Barrier(2)  # the two allowed at once must overlap to pass

        @app.step()
        async def square(x: int) -> int:
            enter()
            await asyncio.wait_for(pair.wait(), 10)
            leave()
            return x * x
    else:
        tpair = threading.Barrier(2)

        @app.step()
        def square(x: int) -> int:
            enter()
            tpair.wait(10)
            leave()
            return x * x

    if mode == "async":

        @app.workflow()
        async def squares(xs: list) -> list:
            return await baton.map(square, xs, concurrency=2)
    else:

        @app.workflow()
        def squares(xs: list) -> list:
            return baton.map(square, xs, concurrency=2)

    assert app.run(squares, [1, 2, 3, 4, 5, 6]) == [1, 4, 9, 16, 25, 36]
    assert state["most"] == 2


@pytest.mark.parametrize("mode", MODES)
def test_a_shutdown_during_a_map_records_what_ran_and_hands_the_rest_back(make_app, mode):
    calls = Counter()
    entered, release = threading.Event(), threading.Event()

    def define(app: baton.App) -> None:
        @app.step(name="work")
        def work(x: int) -> int:
            calls[x] += 1
            if x == 1 and not release.is_set():
                entered.set()
                release.wait(10)
            return -x

        if mode == "async":

            @app.workflow(name="batch")
            async def batch() -> list:
                return await baton.map(work, [1, 2, 3, 4], concurrency=1)
        else:

            @app.workflow(name="batch")
            def batch() -> list:
                return baton.map(work, [1, 2, 3, 4], concurrency=1)

    first = make_app()
    define(first)
    run_id = first.start("batch").id
    assert entered.wait(10)
    runtime = first._runtime
    stopping = threading.Thread(target=first.shutdown)
    stopping.start()
    wait_until(lambda: runtime.draining, what="the shutdown to begin")
    release.set()
    stopping.join(10)

    second = make_app()  # no worker until launch(): look at what the first one left
    define(second)
    row = second.get_run(run_id)
    assert (row.status, row.owner) == (RunStatus.ENQUEUED, None)
    assert [(s.seq, s.status) for s in second.steps(run_id)] == [(1, "SUCCEEDED")]
    second.launch()
    assert second.handle(run_id).result(timeout=10) == [-1, -2, -3, -4]
    assert calls == {1: 1, 2: 1, 3: 1, 4: 1}


def test_map_and_gather_of_nothing_return_empty_lists(make_app):
    app = make_app()

    @app.step()
    def echo(x: int) -> int:
        return x

    @app.workflow()
    def nothing() -> list:
        return [baton.gather(), baton.map(echo, [])]

    assert app.run(nothing) == [[], []]


def test_step_calls_in_an_async_workflow_still_await_and_make_tasks(make_app):
    app = make_app()

    @app.step()
    async def plus(x: int) -> int:
        return x + 1

    @app.workflow()
    async def wf() -> list:
        a = await plus(1)
        b = await asyncio.create_task(plus(a))
        return [a, b, await plus.defer(b)]

    assert app.run(wf) == [2, 3, 4]


# -- bad input -------------------------------------------------------------------------------
def test_gather_refuses_what_is_not_a_pending_call(make_app):
    app = make_app()

    @app.step()
    def one() -> int:
        return 1

    @app.workflow()
    def wf() -> list:
        out = []
        for bad in ([one.defer(), 5], [one.defer(), one()], [[one.defer()]]):
            try:
                baton.gather(*bad)
            except baton.NotADeferredCall as exc:
                out.append([exc.index, exc.got])
        return out

    @app.workflow()
    async def awf() -> str:
        call = one()
        await call
        try:
            await baton.gather(call)
        except baton.NotADeferredCall as exc:
            return str(exc)
        return "accepted"

    @app.workflow()
    def careless() -> list:
        return baton.gather("one")

    (int_arg, value_arg, list_arg) = app.run(wf)
    assert int_arg == [1, "int 5"] and value_arg == [1, "int 1"]
    assert list_arg[0] == 0 and "unpack it" in list_arg[1]
    assert "argument 0 is a step call that was awaited already" in app.run(awf)
    with pytest.raises(baton.RunFailed) as info:
        app.run(careless)
    assert info.value.error_type == "baton.core.errors.NotADeferredCall"
    assert "argument 0 is str 'one'" in info.value.message


def test_map_refuses_a_concurrency_below_one_and_what_is_not_a_step(make_app):
    app = make_app()

    @app.step()
    def echo(x: int) -> int:
        return x

    def plain(x: int) -> int:
        return x

    @app.workflow()
    def wf() -> list:
        out = []
        for limit in (0, -1, True, 1.5):
            try:
                baton.map(echo, [1], concurrency=limit)
            except baton.InvalidConcurrency as exc:
                out.append(exc.value)
        try:
            baton.map(plain, [1])
        except TypeError as exc:
            out.append(str(exc))
        return out

    *limits, not_a_step = app.run(wf)
    assert limits == [0, -1, True, 1.5]
    assert "takes a registered step" in not_a_step


@pytest.mark.parametrize("mode", MODES)
def test_an_unknown_child_workflow_is_refused(make_app, mode):
    app = make_app()

    if mode == "async":

        @app.workflow()
        async def wf() -> list:
            out = []
            for attempt in (
                lambda: baton.start_child("nope"),
                lambda: baton.run_child("nope", version="9"),
                lambda: baton.gather(baton.child("nope")),
            ):
                try:
                    await attempt()
                except baton.UnknownWorkflow as exc:
                    out.append(exc.name)
            return out
    else:

        @app.workflow()
        def wf() -> list:
            out = []
            for attempt in (
                lambda: baton.start_child("nope"),
                lambda: baton.run_child("nope", version="9"),
                lambda: baton.gather(baton.child("nope")),
            ):
                try:
                    attempt()
                except baton.UnknownWorkflow as exc:
                    out.append(exc.name)
            return out

    run = app.start(wf)
    assert run.result(timeout=10) == ["nope"] * 3
    assert app.steps(run.id) == [] and _children(app, run.id) == []


def test_composition_outside_a_workflow_is_refused(make_app):
    app = make_app()

    @app.step()
    def one() -> int:
        return 1

    @app.workflow()
    def leaf() -> int:
        return one()

    @app.step()
    def sneaky() -> int:
        return baton.run_child(leaf)

    @app.workflow()
    def wf() -> int:
        return sneaky()

    for call in (
        lambda: baton.gather(one.defer()),
        lambda: baton.map(one, [1]),
        lambda: baton.start_child(leaf),
        lambda: baton.run_child(leaf),
    ):
        with pytest.raises(baton.NotInWorkflow):
            call()
    with pytest.raises(baton.RunFailed) as info:
        app.run(wf)
    assert info.value.error_type == "baton.core.errors.NotInWorkflow"
    with pytest.raises(TypeError):
        baton.child(42)
    with pytest.raises(baton.SerializationError):
        baton.child(leaf, object())
