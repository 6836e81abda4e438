"""Durable time, signals and human approvals, on real stores (SQLite, PostgreSQL)."""

from __future__ import annotations

import threading

import pytest

import baton
from baton.store.records import NEVER, RunStatus, StepStatus
from conftest import wait_until


def _status(app: baton.App, run_id: str, status: str) -> bool:
    return app.get_run(run_id).status == status


# -- durable time ------------------------------------------------------------------------
@pytest.mark.parametrize("use_async", [False, True])
def test_sleep_waits_as_a_row_and_wakes_on_the_clock(make_app, use_async):
    clock = baton.VirtualClock()
    app = make_app(clock=clock)
    calls: list[str] = []

    @app.step()
    def before() -> int:
        calls.append("before")
        return 1

    @app.step()
    def after(x: int) -> int:
        calls.append("after")
        return x + 1

    if use_async:

        @app.workflow()
        async def napper() -> int:
            x = await before()
            await baton.sleep(30 * 24 * 3600)
            return await after(x)
    else:

        @app.workflow()
        def napper() -> int:
            x = before()
            baton.sleep(30 * 24 * 3600)
            return after(x)

    handle = app.start(napper)
    wait_until(lambda: _status(app, handle.id, RunStatus.WAITING), what="WAITING")
    run = app.get_run(handle.id)
    assert run.owner is None
    assert run.available_at == pytest.approx(clock.now() + 30 * 24 * 3600)
    wait_until(lambda: app._runtime.active_count() == 0, what="no slot held while asleep")
    clock.advance(29 * 24 * 3600)
    assert app.get_run(handle.id).status == RunStatus.WAITING
    clock.advance(24 * 3600)
    assert handle.result(timeout=10) == 2
    assert calls == ["before", "after"]  # the step before the sleep ran once
    kinds = [(s.kind, s.status) for s in app.steps(handle.id)]
    assert kinds == [("step", "SUCCEEDED"), ("sleep", "SUCCEEDED"), ("step", "SUCCEEDED")]
    types = [e.type for e in app.events(run_id=handle.id, limit=50)]
    assert "baton.run.waiting" in types


def test_sleep_until_a_datetime(make_app):
    from datetime import UTC, datetime

    clock = baton.VirtualClock()
    app = make_app(clock=clock)
    target = datetime.fromtimestamp(clock.now() + 3600, UTC)

    @app.workflow()
    def alarm() -> str:
        baton.sleep_until(target)
        return "ring"

    handle = app.start(alarm)
    wait_until(lambda: _status(app, handle.id, RunStatus.WAITING))
    clock.advance(3600)
    assert handle.result(timeout=10) == "ring"


def test_a_sleeping_run_survives_a_restart(make_app, store_path):
    clock = baton.VirtualClock()
    first = make_app(clock=clock)

    def define(app: baton.App):
        @app.workflow(name="nap")
        def nap() -> str:
            baton.sleep(60)
            return "rested"

        return nap

    define(first)
    run_id = first.start("nap").id
    wait_until(lambda: _status(first, run_id, RunStatus.WAITING))
    first.shutdown()
    second = make_app(clock=clock)
    define(second)
    second.launch()
    clock.advance(61)
    assert second.handle(run_id).result(timeout=10) == "rested"


def test_a_workflow_deadline_ends_a_sleeping_run(make_app):
    clock = baton.VirtualClock()
    app = make_app(clock=clock)

    @app.workflow(timeout=10)
    def too_long() -> str:
        baton.sleep(3600)
        return "never"

    handle = app.start(too_long)
    wait_until(lambda: _status(app, handle.id, RunStatus.WAITING))
    assert app.get_run(handle.id).available_at == pytest.approx(clock.now() + 10)
    clock.advance(11)
    with pytest.raises(baton.RunFailed) as info:
        handle.result(timeout=10)
    assert "deadline" in str(info.value)


def test_waits_outside_a_workflow_are_refused(make_app):
    app = make_app()

    @app.step()
    def sneaky() -> None:
        baton.sleep(1)

    @app.workflow()
    def wf() -> None:
        sneaky()

    with pytest.raises(baton.NotInWorkflow):
        baton.sleep(1)
    with pytest.raises(baton.NotInWorkflow):
        baton.wait_for_signal("x")
    with pytest.raises(baton.RunFailed) as info:
        app.run(wf)
    assert info.value.error_type == "baton.core.errors.NotInWorkflow"
    with pytest.raises(ValueError):
        baton.sleep(-1)


# -- signals -----------------------------------------------------------------------------
@pytest.mark.parametrize("use_async", [False, True])
def test_signal_sent_after_the_wait(make_app, use_async):
    app = make_app()
    if use_async:

        @app.workflow()
        async def listener() -> dict:
            return await baton.wait_for_signal("go")
    else:

        @app.workflow()
        def listener() -> dict:
            return baton.wait_for_signal("go")

    handle = app.start(listener)
    wait_until(lambda: _status(app, handle.id, RunStatus.WAITING))
    run = app.get_run(handle.id)
    assert run.available_at == NEVER and run.owner is None
    app.signal(handle.id, "go", {"n": 1})
    assert handle.result(timeout=10) == {"n": 1}


def test_signal_sent_before_the_wait_is_kept(make_app):
    app = make_app()
    gate = threading.Event()

    @app.step()
    def slow() -> None:
        gate.wait(10)

    @app.workflow()
    def late_listener() -> list:
        slow()
        return [baton.wait_for_signal("go"), baton.wait_for_signal("go")]

    handle = app.start(late_listener)
    app.signal(handle.id, "go", 1)
    app.signal(handle.id, "go", 2)
    gate.set()
    assert handle.result(timeout=10) == [1, 2]  # each consumed once, in order
    signals = app.store.list_signals(handle.id)
    assert [s.consumed_seq for s in signals] == [2, 3]


def test_signal_timeout_raises_into_the_workflow(make_app):
    clock = baton.VirtualClock()
    app = make_app(clock=clock)

    @app.workflow()
    def patient() -> str:
        try:
            baton.wait_for_signal("go", timeout=60)
        except baton.SignalTimeout as exc:
            return f"gave up on {exc.name}"
        return "got it"

    handle = app.start(patient)
    wait_until(lambda: _status(app, handle.id, RunStatus.WAITING))
    clock.advance(61)
    assert handle.result(timeout=10) == "gave up on go"
    # a signal after the timeout is refused: the run has ended
    with pytest.raises(baton.InvalidState):
        app.signal(handle.id, "go")


def test_signals_to_unknown_or_finished_runs_are_refused(make_app):
    app = make_app()

    @app.workflow()
    def quick() -> int:
        return 1

    handle = app.start(quick)
    handle.result(timeout=10)
    with pytest.raises(baton.RunNotFound):
        app.signal("no-such-run", "go")
    with pytest.raises(baton.InvalidState):
        app.signal(handle.id, "go")
    with pytest.raises(baton.SerializationError):
        app.signal(handle.id, "go", {"bad": object()})
    assert app.store.list_signals(handle.id) == []


def test_a_signal_racing_the_suspension_is_not_lost(make_app):
    """Many signals sent while runs go to sleep: every run gets its signal."""
    app = make_app()

    @app.workflow()
    def echo() -> int:
        return baton.wait_for_signal("v")

    handles = [app.start(echo) for _ in range(40)]
    for i, handle in enumerate(handles):
        app.signal(handle.id, "v", i)
    assert [h.result(timeout=20) for h in handles] == list(range(40))


# -- approvals ---------------------------------------------------------------------------
def _approval_workflow(app: baton.App, **options):
    @app.workflow(name="expense")
    def expense(amount: int) -> dict:
        decision = baton.wait_for_approval("manager", **options)
        return {
            "approved": decision.approved,
            "by": decision.by,
            "comment": decision.comment,
            "timed_out": decision.timed_out,
        }

    return expense


def test_approval_is_listed_decided_once_and_resumes(make_app):
    app = make_app()
    expense = _approval_workflow(app, assignees=["ann", "bob"])
    handle = app.start(expense, 120)
    pending = wait_until(lambda: app.approvals(), what="a pending approval")
    assert [(a.run_id, a.name, a.assignees) for a in pending] == [
        (handle.id, "manager", ["ann", "bob"])
    ]
    with pytest.raises(baton.NotAnAssignee):
        app.approve(handle.id, "manager", by="mallory")
    with pytest.raises(baton.ApprovalNotFound):
        app.approve(handle.id, "director", by="ann")
    app.approve(handle.id, "manager", by="ann", comment="fine")
    with pytest.raises(baton.ApprovalClosed):
        app.reject(handle.id, "manager", by="bob")
    assert handle.result(timeout=10) == {
        "approved": True,
        "by": "ann",
        "comment": "fine",
        "timed_out": False,
    }
    assert app.approvals() == []
    decided = app.approvals(status="APPROVED")
    assert decided[0].decided_by == "ann"
    with pytest.raises(baton.ApprovalClosed):
        app.approve(handle.id, "manager", by="ann")
    types = [e.type for e in app.events(run_id=handle.id, limit=50)]
    assert "baton.approval.requested" in types and "baton.approval.decided" in types


def test_rejection(make_app):
    app = make_app()
    expense = _approval_workflow(app)
    handle = app.start(expense, 10)
    wait_until(lambda: app.approvals())
    app.reject(handle.id, "manager", by="zoe", comment="no")
    assert handle.result(timeout=10)["approved"] is False


def test_approval_timeout_rejects_by_default(make_app):
    clock = baton.VirtualClock()
    app = make_app(clock=clock)
    expense = _approval_workflow(app, timeout=3600)
    handle = app.start(expense, 10)
    wait_until(lambda: app.approvals())
    clock.advance(3601)
    assert handle.result(timeout=10) == {
        "approved": False,
        "by": None,
        "comment": None,
        "timed_out": True,
    }
    with pytest.raises((baton.ApprovalClosed, baton.InvalidState)):
        app.approve(handle.id, "manager")


def test_approval_timeout_can_fail_the_run(make_app):
    clock = baton.VirtualClock()
    app = make_app(clock=clock)
    expense = _approval_workflow(app, timeout=60, on_timeout="fail")
    handle = app.start(expense, 10)
    wait_until(lambda: app.approvals())
    clock.advance(61)
    with pytest.raises(baton.RunFailed) as info:
        handle.result(timeout=10)
    assert info.value.error_type == "baton.core.errors.ApprovalTimeout"


def test_approval_timeout_escalates(make_app):
    clock = baton.VirtualClock()
    app = make_app(clock=clock)
    expense = _approval_workflow(
        app, timeout=60, assignees=["ann"], on_timeout=baton.Escalate(to=["boss"], timeout=600)
    )
    handle = app.start(expense, 10)
    wait_until(lambda: app.approvals())
    clock.advance(61)
    escalated = wait_until(
        lambda: [a for a in app.approvals() if a.assignees == ["boss"]], what="escalation"
    )
    assert escalated[0].deadline_at == pytest.approx(clock.now() + 600, abs=1)
    with pytest.raises(baton.NotAnAssignee):
        app.approve(handle.id, "manager", by="ann")
    app.approve(handle.id, "manager", by="boss")
    assert handle.result(timeout=10)["by"] == "boss"


def test_a_decision_racing_the_timeout_has_one_winner(make_app):
    """Decisions sent around the deadline: for each run exactly one outcome is recorded, and
    the caller's answer agrees with what the run saw."""
    import random
    import time

    app = make_app()
    expense = _approval_workflow(app, timeout=0.3)
    handles = [app.start(expense, i) for i in range(12)]
    wait_until(lambda: len(app.approvals()) == 12)
    outcomes = {}

    def decide(handle: baton.RunHandle) -> None:
        time.sleep(random.uniform(0.2, 0.4))
        try:
            app.approve(handle.id, "manager", by="ann")
            outcomes[handle.id] = "decided"
        except baton.ApprovalClosed:
            outcomes[handle.id] = "closed"

    threads = [threading.Thread(target=decide, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for handle in handles:
        result = handle.result(timeout=10)
        won = outcomes[handle.id] == "decided"
        assert result["approved"] is won
        assert result["timed_out"] is not won
    statuses = {a.run_id: a.status for a in app.approvals(status=None)}
    assert all(
        statuses[h.id] == ("APPROVED" if outcomes[h.id] == "decided" else "TIMED_OUT")
        for h in handles
    )


def test_bad_approval_options(make_app):
    app = make_app()

    @app.workflow()
    def bad() -> None:
        baton.wait_for_approval("x", timeout=-1)

    with pytest.raises(baton.RunFailed):
        app.run(bad)
    with pytest.raises(ValueError):
        app.approvals(status="MAYBE")
    with pytest.raises(baton.RunNotFound):
        app.approve("nope", "manager")


def test_waiting_step_status_is_recorded(make_app):
    app = make_app()
    expense = _approval_workflow(app)
    handle = app.start(expense, 1)
    wait_until(lambda: app.approvals())
    steps = app.steps(handle.id)
    assert [(s.kind, s.status) for s in steps] == [("approval", StepStatus.WAITING)]
    app.approve(handle.id, "manager")
    handle.result(timeout=10)


# -- the CLI -----------------------------------------------------------------------------
def test_cli_lists_and_decides_approvals(make_app, store_path):
    import json

    from test_cli import assert_fails, cli

    app = make_app()
    expense = _approval_workflow(app, assignees=["ann"])
    first = app.start(expense, 1)
    second = app.start(expense, 2)
    wait_until(lambda: len(app.approvals()) == 2)

    listed = cli(store_path, "approvals", "ls")
    assert listed.exit_code == 0, listed.output
    assert first.id in listed.stdout and "manager" in listed.stdout and "ann" in listed.stdout
    docs = json.loads(cli(store_path, "approvals", "ls", "--json").stdout)
    assert {d["run_id"] for d in docs} == {first.id, second.id}
    assert docs[0]["assignees"] == ["ann"] and docs[0]["status"] == "PENDING"  # the API's shape

    assert_fails(
        cli(store_path, "approvals", "approve", first.id, "manager", "--by", "eve"),
        "eve may not decide",
    )
    done = cli(store_path, "approvals", "approve", first.id, "manager", "--by", "ann", "-m", "ok")
    assert done.exit_code == 0, done.output
    assert "APPROVED by ann" in done.stdout
    assert_fails(
        cli(store_path, "approvals", "reject", first.id, "manager", "--by", "ann"), "already closed"
    )
    rejected = cli(store_path, "approvals", "reject", second.id, "manager", "--by", "ann", "--json")
    assert json.loads(rejected.stdout)["status"] == "REJECTED"
    assert first.result(timeout=10)["approved"] is True
    assert second.result(timeout=10)["approved"] is False
    assert_fails(cli(store_path, "approvals", "approve", "no-such-run", "manager"), "no run")
    bad = cli(store_path, "approvals", "ls", "--status", "MAYBE")
    assert bad.exit_code == 2


def test_a_large_signal_payload_is_stored_once_outside_the_row(make_app):
    app = make_app(payload_threshold=1024)

    @app.workflow()
    def big_listener() -> int:
        return len(baton.wait_for_signal("blob")["data"])

    handle = app.start(big_listener)
    wait_until(lambda: _status(app, handle.id, RunStatus.WAITING))
    app.signal(handle.id, "blob", {"data": "x" * 10_000})
    assert handle.result(timeout=10) == 10_000
    assert app.store.list_signals(handle.id)[0].payload.startswith('{"data"')
    conn = app.store._read()
    raw = conn.execute("SELECT payload FROM signals").fetchone()[0]
    assert raw.startswith("@payload:")
    assert conn.execute("SELECT COUNT(*) FROM payloads").fetchone()[0] == 1
