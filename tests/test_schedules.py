"""Schedules on real stores (SQLite, PostgreSQL) with a virtual clock: one run per slot across
restarts and racing processes, catch-up, overlap policies, pause and resume, backfill, time
zones and DST, bad input, and the `baton schedules` command."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner, Result

import baton
from baton.cli.main import app as cli_app
from baton.engine.registry import Registry
from baton.engine.scheduler import Scheduler
from baton.engine.schedules import Skipped, Timing, admit, plan_pass, slot_iso, slot_key
from baton.store import open_store
from baton.store.records import RunRecord, RunStatus
from conftest import wait_until

T0 = datetime(2024, 1, 1, tzinfo=UTC).timestamp()  # a whole hour: every=60 slots are T0 + 60k
BERLIN = ZoneInfo("Europe/Berlin")
runner = CliRunner(env={"BATON_STORE": None, "FORCE_COLOR": None, "TTY_COMPATIBLE": None})


def berlin(*args: int, fold: int = 0) -> float:
    return datetime(*args, fold=fold, tzinfo=BERLIN).timestamp()  # type: ignore[misc]


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def scheduled(app: baton.App, name: str) -> list[RunRecord]:
    """The runs a schedule started, oldest slot first."""
    runs = [r for r in app.runs(limit=1000) if r.schedule == name]
    return sorted(runs, key=lambda r: r.idempotency_key or "")


def settled(app: baton.App, name: str, count: int) -> bool:
    """`count` runs of the schedule exist and all have ended (so that "skip" fires the next)."""
    runs = scheduled(app, name)
    return len(runs) == count and all(RunStatus(r.status).terminal for r in runs)


def keys(app: baton.App, name: str) -> list[str]:
    return [r.idempotency_key or "" for r in scheduled(app, name)]


def events(app: baton.App, type: str, name: str | None = None) -> list[dict[str, Any]]:
    found = [json.loads(e.data or "null") for e in app.events(type=type, limit=1000)]
    return [d for d in found if name is None or d["schedule"] == name]


def with_report(app: baton.App) -> baton.App:
    @app.workflow(name="report")
    def report(label: str, scale: int = 1) -> str:
        return f"{label}x{scale}"

    return app


@pytest.fixture
def clock() -> baton.VirtualClock:
    return baton.VirtualClock(start=T0 + 10)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Holds blocking workflows until set; set at the end so that every App can shut down."""
    event = threading.Event()
    yield event
    event.set()


def blocking_app(
    make_app: Callable[..., baton.App], clock: baton.VirtualClock, gate: threading.Event
) -> tuple[baton.App, list[tuple[str, str]]]:
    """An App whose `slow` workflow runs until `gate` is set; it logs starts and ends."""
    app = make_app(clock=clock)
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    @app.workflow(name="slow")
    def slow() -> str:
        run = baton.current_run()
        assert run is not None
        with lock:
            seen.append(("start", run.run_id))
        gate.wait(20)
        with lock:
            seen.append(("end", run.run_id))
        return "done"

    return app, seen


# -- slot maths (pure) ---------------------------------------------------------------------------
def test_interval_slots_are_multiples_since_the_epoch() -> None:
    t = Timing.parse("s", None, 60)
    assert (t.kind, t.spec) == ("every", "60")
    assert t.next_after(T0) == T0 + 60 and t.next_after(T0 + 1) == T0 + 60
    assert t.first_from(T0) == T0 and t.latest(T0 + 59) == T0
    assert t.between(T0, T0 + 180, 10) == [T0, T0 + 60, T0 + 120, T0 + 180]
    assert t.count(T0, T0 + 180) == (3, True, [T0, T0 + 60, T0 + 120])
    tenth = Timing.parse("s", None, 0.1)
    assert tenth.between(0.25, 0.61, 10) == [0.3, 0.4, 0.5, 0.6]  # no float drift
    assert tenth.latest(0.3) == 0.3 and tenth.next_after(0.3) == 0.4
    assert slot_key("nightly", T0) == "schedule:nightly:2024-01-01T00:00:00Z"
    assert slot_iso(0.3) == "1970-01-01T00:00:00.300000Z"


def test_cron_slots_in_a_time_zone() -> None:
    t = Timing.parse("s", "0 9 * * mon-fri", None, "Europe/Berlin")
    # Friday 2024-01-05 09:00 CET, then Monday
    assert t.between(berlin(2024, 1, 5), berlin(2024, 1, 9), 10) == [
        berlin(2024, 1, 5, 9),
        berlin(2024, 1, 8, 9),
    ]
    assert t.latest(berlin(2024, 1, 7)) == berlin(2024, 1, 5, 9)
    assert t.next_after(berlin(2024, 1, 5, 9)) == berlin(2024, 1, 8, 9)
    seconds = Timing.parse("s", "* * * * * */15", None)  # croniter's sixth field: seconds
    assert seconds.between(T0, T0 + 30, 10) == [T0, T0 + 15, T0 + 30]


def test_dst_spring_forward_in_berlin_fires_a_missing_time_once() -> None:
    # 2024-03-31: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day
    daily = Timing.parse("s", "30 2 * * *", None, "Europe/Berlin")
    assert daily.between(berlin(2024, 3, 30), berlin(2024, 4, 2), 10) == [
        berlin(2024, 3, 30, 2, 30),
        berlin(2024, 3, 31, 3, 0),  # when the clock jumps
        berlin(2024, 4, 1, 2, 30),
    ]
    half_hourly = Timing.parse("s", "*/30 * * * *", None, "Europe/Berlin")
    slots = half_hourly.between(berlin(2024, 3, 31, 1), berlin(2024, 3, 31, 4), 20)
    assert slots == [
        berlin(2024, 3, 31, 1, 0),
        berlin(2024, 3, 31, 1, 30),
        berlin(2024, 3, 31, 3, 0),
        berlin(2024, 3, 31, 3, 30),
        berlin(2024, 3, 31, 4, 0),
    ]
    assert len(set(slots)) == len(slots)


def test_dst_fall_back_in_berlin_fires_a_repeated_time_once() -> None:
    # 2024-10-27: 03:00 CEST goes back to 02:00 CET; 02:00-02:59 happen twice
    daily = Timing.parse("s", "30 2 * * *", None, "Europe/Berlin")
    assert daily.between(berlin(2024, 10, 26), berlin(2024, 10, 29), 10) == [
        berlin(2024, 10, 26, 2, 30),
        berlin(2024, 10, 27, 2, 30),  # the first 02:30 (CEST) only
        berlin(2024, 10, 28, 2, 30),
    ]
    # from inside the repeated hour, the next slot is the next day's
    inside = berlin(2024, 10, 27, 2, 10, fold=1)
    assert daily.next_after(inside) == berlin(2024, 10, 28, 2, 30)
    assert daily.latest(inside) == berlin(2024, 10, 27, 2, 30)
    hourly = Timing.parse("s", "0 * * * *", None, "Europe/Berlin")
    assert hourly.between(berlin(2024, 10, 27, 1), berlin(2024, 10, 27, 4), 10) == [
        berlin(2024, 10, 27, 1),
        berlin(2024, 10, 27, 2),  # 02:00 CEST; 02:00 CET repeats it and does not fire
        berlin(2024, 10, 27, 3),
        berlin(2024, 10, 27, 4),
    ]


def test_catch_up_plan_fires_the_latest_and_the_recent() -> None:
    every = Timing.parse("s", None, 60)
    now = T0 + 610  # slots T0+60 ... T0+600 were missed
    plan = plan_pass(every, T0 + 60, now, 150, "allow_all")
    assert plan.candidates == (T0 + 480, T0 + 540, T0 + 600)
    assert plan.skipped == (Skipped("catchup", 7, tuple(T0 + 60 * k for k in range(1, 8))),)
    assert plan.next_fire_at == T0 + 660
    only_latest = plan_pass(every, T0 + 60, now, 0, "allow_all")
    assert only_latest.candidates == (T0 + 600,)
    assert only_latest.skipped[0].count == 9
    one_run = plan_pass(every, T0 + 60, now, 150, "skip")
    assert one_run.candidates == (T0 + 600,)
    assert [(s.reason, s.count) for s in one_run.skipped] == [("catchup", 7), ("overlap", 2)]
    on_time = plan_pass(every, T0 + 60, T0 + 60, 60, "skip")
    assert (on_time.candidates, on_time.skipped) == ((T0 + 60,), ())
    assert plan_pass(every, T0 + 60, T0 + 59, 60, "skip").candidates == ()
    backlog = plan_pass(every, T0 + 60, T0 + 6000, 10_000, "allow_all", limit=10)
    assert backlog.candidates == tuple(T0 + 60 * k for k in range(1, 11))
    assert backlog.next_fire_at == T0 + 660  # the rest in the next pass


def test_a_long_cron_outage_is_counted_up_to_a_cap() -> None:
    minutely = Timing.parse("s", "* * * * *", None)
    plan = plan_pass(minutely, T0, T0 + 30 * 86400, 60, "skip")
    assert plan.candidates == (T0 + 30 * 86400,)
    catchup = plan.skipped[0]
    assert catchup.reason == "catchup" and not catchup.exact and catchup.count > 0


def test_overlap_policies_admit() -> None:
    assert admit("skip", 0, 0) and not admit("skip", 1, 0)
    assert admit("buffer_one", 1, 0) and not admit("buffer_one", 2, 1)
    assert admit("allow_all", 5, 5)


# -- firing ----------------------------------------------------------------------------------
def test_fires_one_run_per_slot(make_app, clock) -> None:
    app = with_report(make_app(clock=clock))
    app.schedule("minutely", "report", "tick", every=60, scale=2)
    app.launch()
    assert app.store.next_schedule_fire() == T0 + 60  # the first slot after declaring
    for k in (1, 2, 3):
        clock.set(T0 + 60 * k + 1)
        wait_until(lambda k=k: settled(app, "minutely", k), what=f"run {k}")
    runs = scheduled(app, "minutely")
    assert keys(app, "minutely") == [slot_key("minutely", T0 + 60 * k) for k in (1, 2, 3)]
    for run in runs:
        assert run.schedule == "minutely" and run.workflow == "report"
        assert app.handle(run.run_id).result(timeout=10) == "tickx2"
    fired = events(app, "baton.schedule.fired", "minutely")
    assert [f["slot"] for f in fired] == [slot_iso(T0 + 60 * k) for k in (1, 2, 3)]
    assert {f["run_id"] for f in fired} == {r.run_id for r in runs}
    for run in runs:
        types = [e.type for e in app.events(run_id=run.run_id)]
        assert types[:2] == ["baton.run.enqueued", "baton.schedule.fired"]
    (stored,) = app.schedules()
    assert stored.next_fire_at == T0 + 240 and stored.last_fire_at == T0 + 180


def test_fires_once_per_slot_across_a_restart(make_app, clock) -> None:
    first = with_report(make_app(clock=clock))
    first.schedule("minutely", "report", "tick", every=60)
    first.launch()
    clock.set(T0 + 61)
    wait_until(lambda: settled(first, "minutely", 1), what="the first slot's run")
    first.shutdown()

    second = with_report(make_app(clock=clock))
    second.schedule("minutely", "report", "tick", every=60)  # unchanged: keeps its state
    second.launch()
    assert second.store.get_schedule("minutely").next_fire_at == T0 + 120
    clock.set(T0 + 121)
    wait_until(lambda: settled(second, "minutely", 2), what="the second slot's run")
    assert keys(second, "minutely") == [
        slot_key("minutely", T0 + 60),
        slot_key("minutely", T0 + 120),
    ]
    assert len(events(second, "baton.schedule.fired", "minutely")) == 2
    for run in scheduled(second, "minutely"):
        assert second.handle(run.run_id).result(timeout=10) == "tickx1"


def test_two_apps_on_one_file_start_one_run_per_slot(make_app, clock) -> None:
    apps = [with_report(make_app(clock=clock)) for _ in range(2)]
    for app in apps:
        app.schedule("minutely", "report", "race", every=60)
        app.launch()
    for k in range(1, 6):
        clock.set(T0 + 60 * k + 1)
        wait_until(lambda k=k: settled(apps[0], "minutely", k), what=f"slot {k}")
    clock.advance(1)  # both dispatchers look again; nothing more is due
    wait_until(lambda: all(r.status == RunStatus.SUCCEEDED for r in scheduled(apps[1], "minutely")))
    assert keys(apps[1], "minutely") == [slot_key("minutely", T0 + 60 * k) for k in range(1, 6)]
    assert len(events(apps[1], "baton.schedule.fired", "minutely")) == 5


def test_racing_stores_fire_each_slot_once(store_path: Path) -> None:
    """Two store connections (as two processes) fire the same due slots at the same moment."""
    stores = [open_store(store_path) for _ in range(3)]
    try:
        app = baton.App(stores[0], worker=False, clock=baton.VirtualClock(T0 + 10))
        with_report(app).schedule("race", "report", "x", every=60, overlap="allow_all")
        app.schedules()  # stores the declaration
        schedulers = [Scheduler(s, Registry(), f"test://{i}", 1.0) for i, s in enumerate(stores)]
        for k in range(1, 21):
            barrier = threading.Barrier(len(schedulers))

            def fire(scheduler: Scheduler, now: float = T0 + 60 * k + 1, barrier=barrier) -> None:
                barrier.wait()
                asyncio.run(scheduler.fire_due(now))

            threads = [threading.Thread(target=fire, args=(s,)) for s in schedulers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert keys(app, "race") == sorted(slot_key("race", T0 + 60 * k) for k in range(1, 21))
        assert len(events(app, "baton.schedule.fired", "race")) == 20
    finally:
        for store in stores:
            store.close()


# -- overlap ---------------------------------------------------------------------------------
def test_overlap_skip_skips_slots_while_a_run_is_unfinished(make_app, clock, gate) -> None:
    app, seen = blocking_app(make_app, clock, gate)
    app.schedule("job", "slow", every=60)  # overlap="skip" by default
    app.launch()
    clock.set(T0 + 61)
    wait_until(lambda: len(seen) == 1, what="the first run to start")
    clock.set(T0 + 121)
    wait_until(lambda: events(app, "baton.schedule.skipped", "job"), what="a skipped slot")
    (skipped,) = events(app, "baton.schedule.skipped", "job")
    assert skipped["reason"] == "overlap" and skipped["slots"] == [slot_iso(T0 + 120)]
    assert keys(app, "job") == [slot_key("job", T0 + 60)]
    gate.set()
    wait_until(lambda: scheduled(app, "job")[0].status == RunStatus.SUCCEEDED)
    clock.set(T0 + 181)
    wait_until(lambda: len(scheduled(app, "job")) == 2, what="the third slot's run")
    assert keys(app, "job") == [slot_key("job", T0 + 60), slot_key("job", T0 + 180)]


def test_overlap_buffer_one_keeps_one_run_waiting(make_app, clock, gate) -> None:
    app, seen = blocking_app(make_app, clock, gate)
    app.schedule("job", "slow", every=60, overlap="buffer_one")
    app.launch()
    clock.set(T0 + 61)
    wait_until(lambda: len(seen) == 1, what="the first run to start")
    clock.set(T0 + 121)
    wait_until(lambda: len(scheduled(app, "job")) == 2, what="the buffered run")
    clock.set(T0 + 181)
    wait_until(lambda: events(app, "baton.schedule.skipped", "job"), what="a skipped slot")
    (skipped,) = events(app, "baton.schedule.skipped", "job")
    assert skipped["reason"] == "overlap" and skipped["slots"] == [slot_iso(T0 + 180)]
    first, buffered = scheduled(app, "job")
    assert buffered.idempotency_key == slot_key("job", T0 + 120)
    assert (buffered.concurrency_key, buffered.key_limit) == ("schedule:job", 1)
    assert buffered.status == RunStatus.ENQUEUED and buffered.started_at is None
    gate.set()
    for run in (first, buffered):
        assert app.handle(run.run_id).result(timeout=10) == "done"
    # the buffered run started only after the first one ended
    assert seen == [
        ("start", first.run_id),
        ("end", first.run_id),
        ("start", buffered.run_id),
        ("end", buffered.run_id),
    ]


def test_overlap_allow_all_runs_side_by_side(make_app, clock, gate) -> None:
    app, seen = blocking_app(make_app, clock, gate)
    app.schedule("job", "slow", every=60, overlap="allow_all")
    app.launch()
    clock.set(T0 + 61)
    wait_until(lambda: len(seen) == 1, what="the first run to start")
    clock.set(T0 + 121)
    wait_until(lambda: len(seen) == 2, what="the second run to start beside the first")
    assert [kind for kind, _ in seen] == ["start", "start"]
    gate.set()
    for run in scheduled(app, "job"):
        assert app.handle(run.run_id).result(timeout=10) == "done"
    assert events(app, "baton.schedule.skipped", "job") == []


# -- catch-up --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overlap", "catchup", "fired", "skipped"),
    [
        ("allow_all", 150, [480, 540, 600], [("catchup", 7)]),
        ("skip", 150, [600], [("catchup", 7), ("overlap", 2)]),
        ("allow_all", 0, [600], [("catchup", 9)]),
    ],
)
def test_catch_up_after_the_node_was_down(
    make_app, clock, overlap: str, catchup: float, fired: list[int], skipped: list[tuple]
) -> None:
    first = with_report(make_app(clock=clock))
    first.schedule("job", "report", "late", every=60, overlap=overlap, catchup=catchup)
    first.launch()
    first.shutdown()
    clock.set(T0 + 610)  # slots T0+60 ... T0+600 pass while no node runs

    second = with_report(make_app(clock=clock))
    second.schedule("job", "report", "late", every=60, overlap=overlap, catchup=catchup)
    second.launch()
    wait_until(lambda: settled(second, "job", len(fired)), what="the catch-up runs")
    wait_until(lambda: second.store.get_schedule("job").next_fire_at == T0 + 660)
    assert keys(second, "job") == [slot_key("job", T0 + s) for s in fired]
    found = events(second, "baton.schedule.skipped", "job")
    assert [(e["reason"], e["count"]) for e in found] == skipped
    assert found[0]["slots"][0] == slot_iso(T0 + 60) and found[0]["exact"] is True
    clock.set(T0 + 661)  # back to one run per slot
    wait_until(lambda: settled(second, "job", len(fired) + 1), what="the next slot")
    assert keys(second, "job")[-1] == slot_key("job", T0 + 660)


# -- pause, resume, declarations ---------------------------------------------------------------
def test_pause_and_resume(make_app, clock) -> None:
    app = with_report(make_app(clock=clock))
    app.schedule("job", "report", "p", every=60)
    app.launch()
    paused = app.pause_schedule("job")
    assert paused.paused is True
    assert app.pause_schedule("job").paused is True  # again: no change
    assert app.store.next_schedule_fire() is None
    clock.set(T0 + 130)  # slots T0+60 and T0+120 pass while paused
    app.shutdown()

    again = with_report(make_app(clock=clock))
    again.schedule("job", "report", "p", every=60)  # a restart keeps it paused
    again.launch()
    assert again.schedules()[0].paused is True
    resumed = again.resume_schedule("job")
    assert resumed.paused is False and resumed.next_fire_at == T0 + 180
    clock.set(T0 + 181)
    wait_until(lambda: settled(again, "job", 1), what="the first slot after resuming")
    assert keys(again, "job") == [slot_key("job", T0 + 180)]  # paused slots never fire
    assert len(events(again, "baton.schedule.paused", "job")) == 1
    assert len(events(again, "baton.schedule.resumed", "job")) == 1
    assert events(again, "baton.schedule.skipped", "job") == []


def test_a_changed_declaration_updates_the_stored_schedule(make_app, clock) -> None:
    app = with_report(make_app(clock=clock))
    app.schedule("job", "report", "a", every=60)
    app.launch()
    app.pause_schedule("job")
    app.shutdown()
    clock.set(T0 + 30)

    other_input = with_report(make_app(clock=clock))
    other_input.schedule("job", "report", "b", every=60, priority=3)
    other_input.launch()
    stored = other_input.store.get_schedule("job")
    assert json.loads(stored.input) == {"args": ["b"], "kwargs": {}} and stored.priority == 3
    assert stored.next_fire_at == T0 + 60 and stored.paused  # same timing: same next slot
    other_input.shutdown()

    other_timing = with_report(make_app(clock=clock))
    other_timing.schedule("job", "report", "b", cron="0 * * * *")
    other_timing.launch()
    stored = other_timing.store.get_schedule("job")
    assert (stored.kind, stored.spec) == ("cron", "0 * * * *")
    assert stored.next_fire_at == T0 + 3600 and stored.paused  # new timing: its first slot


# -- trigger and backfill --------------------------------------------------------------------
def test_trigger_starts_a_run_now(make_app, clock) -> None:
    app = with_report(make_app(clock=clock))
    app.schedule("job", "report", "now", every=3600, scale=3)
    handles = [app.trigger_schedule("job") for _ in range(2)]
    assert [h.result(timeout=10) for h in handles] == ["nowx3", "nowx3"]
    runs = scheduled(app, "job")
    assert len(runs) == 2 and all(r.schedule == "job" for r in runs)
    assert all(r.idempotency_key.startswith("schedule:job:trigger:") for r in runs)
    fired = events(app, "baton.schedule.fired", "job")
    assert [f["trigger"] for f in fired] == ["manual", "manual"]
    assert app.store.get_schedule("job").next_fire_at == T0 + 3600  # slots are unchanged


def test_backfill_fires_each_slot_once(make_app, clock) -> None:
    app = with_report(make_app(clock=clock))
    app.schedule("hourly", "report", "old", cron="0 * * * *")
    app.launch()
    handles = app.backfill("hourly", T0 - 3 * 3600, T0 - 1)
    assert [h.created for h in handles] == [True, True, True]
    assert [h.result(timeout=10) for h in handles] == ["oldx1"] * 3
    expected = [slot_key("hourly", T0 - k * 3600) for k in (3, 2, 1)]
    assert [h.info().idempotency_key for h in handles] == expected
    # an overlapping range: the slots that have runs keep them
    again = app.backfill(
        "hourly", datetime(2023, 12, 31, 22, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)
    )
    assert [h.created for h in again] == [False, False, True]
    assert [h.id for h in again[:2]] == [h.id for h in handles[1:]]
    assert len(scheduled(app, "hourly")) == 4
    fired = events(app, "baton.schedule.fired", "hourly")
    assert [f["trigger"] for f in fired] == ["backfill"] * 4
    assert app.backfill("hourly", T0 + 1, T0 + 2) == []  # no slot in the range


def test_backfill_reads_naive_times_in_the_schedule_time_zone(make_app, clock) -> None:
    app = with_report(make_app(clock=clock))
    app.schedule("berlin", "report", "tz", cron="0 22,23 * * *", timezone="Europe/Berlin")
    handles = app.backfill("berlin", datetime(2023, 12, 31, 21), datetime(2023, 12, 31, 23, 30))
    assert [h.info().idempotency_key for h in handles] == [
        "schedule:berlin:2023-12-31T21:00:00Z",  # 22:00 CET
        "schedule:berlin:2023-12-31T22:00:00Z",
    ]


# -- DST on the worker ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "steps", "expected"),
    [
        # spring forward: 02:30 does not exist on 2024-03-31 and fires once, at 03:00 CEST
        (
            berlin(2024, 3, 30, 12),
            [berlin(2024, 3, 31, 1, 59), berlin(2024, 3, 31, 3, 1), berlin(2024, 4, 1, 3)],
            ["2024-03-31T01:00:00Z", "2024-04-01T00:30:00Z"],
        ),
        # fall back: 02:30 happens twice on 2024-10-27 and fires once, at the first
        (
            berlin(2024, 10, 26, 12),
            [
                berlin(2024, 10, 27, 2, 31),
                berlin(2024, 10, 27, 2, 31, fold=1),
                berlin(2024, 10, 28, 3),
            ],
            ["2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"],
        ),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_dst_in_berlin_on_the_worker(
    make_app, start: float, steps: list[float], expected: list[str]
) -> None:
    clock = baton.VirtualClock(start=start)
    app = with_report(make_app(clock=clock))
    app.schedule("nightly", "report", "n", cron="30 2 * * *", timezone="Europe/Berlin")
    app.launch()
    for when in steps:
        clock.set(when)
        # each step is handled once the stored next slot lies ahead of the clock
        wait_until(lambda: app.store.next_schedule_fire() > clock.now(), what="a firing pass")
        wait_until(lambda: settled(app, "nightly", len(scheduled(app, "nightly"))))
    wait_until(lambda: settled(app, "nightly", len(expected)))
    assert keys(app, "nightly") == [f"schedule:nightly:{slot}" for slot in expected]


# -- bad input -------------------------------------------------------------------------------
BAD_DECLARATIONS = [
    ({"cron": "61 * * * *"}, "the minute field '61' is not valid", "minute"),
    ({"cron": "0 25 * * *"}, "the hour field '25' is not valid", "hour"),
    ({"cron": "0 0 * * funday"}, "the day of week field 'funday' is not valid", "day of week"),
    ({"cron": "0 0 *"}, "has 3 field(s)", "cron"),
    ({"cron": "0 0 31 2 *"}, "never matches a date", "cron"),
    ({"cron": "0 * * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'", None),
    ({"cron": "0 * * * *", "every": 60}, "exactly one of cron= or every= (both given)", None),
    ({}, "exactly one of cron= or every= (neither given)", None),
    ({"every": 0}, "every= must be a number of seconds > 0, got 0", None),
    ({"every": -5}, "every= must be a number of seconds > 0, got -5", None),
    ({"every": 60, "overlap": "sometimes"}, "unknown overlap policy 'sometimes'", None),
    ({"every": 60, "catchup": -1}, "catchup= must be a number of seconds >= 0", None),
]


@pytest.mark.parametrize(("options", "message", "field"), BAD_DECLARATIONS)
def test_bad_declarations_are_refused_and_nothing_is_written(
    make_app, clock, options: dict[str, Any], message: str, field: str | None
) -> None:
    app = with_report(make_app(clock=clock))
    app.launch()  # a valid declaration would be stored at once
    with pytest.raises(baton.ScheduleError) as caught:
        app.schedule("broken", "report", "x", **options)
    assert message in str(caught.value) and "schedule 'broken'" in str(caught.value)
    assert caught.value.schedule == "broken" and caught.value.field == field
    assert app.schedules() == [] and app.events(limit=1000) == []
    app.schedule("broken", "report", "x", every=60)  # the name is still free
    assert [s.name for s in app.schedules()] == ["broken"]


def test_unknown_names_and_bad_ranges_are_refused_and_nothing_is_written(make_app, clock) -> None:
    app = with_report(make_app(clock=clock))
    app.schedule("job", "report", "x", every=60)
    app.launch()
    before = app.events(limit=1000)
    for call in (app.pause_schedule, app.resume_schedule, app.trigger_schedule):
        with pytest.raises(baton.ScheduleNotFound, match="schedule 'nope': no such schedule"):
            call("nope")
    with pytest.raises(baton.ScheduleNotFound):
        app.backfill("nope", T0, T0 + 60)
    with pytest.raises(baton.ScheduleError, match=r"backfill start .* is after its end"):
        app.backfill("job", T0 + 60, T0)
    with pytest.raises(baton.ScheduleError, match="already declared"):
        app.schedule("job", "report", "y", every=30)
    with pytest.raises(baton.ScheduleError, match="unknown workflow 'missing'"):
        app.schedule("other", "missing", every=30)
    assert app.runs() == [] and app.events(limit=1000) == before
    assert [(s.name, s.paused) for s in app.schedules()] == [("job", False)]


# -- the CLI ---------------------------------------------------------------------------------
def cli(path: Path, *args: str) -> Result:
    return runner.invoke(cli_app, ["--store", str(path), *args])


def ok_json(path: Path, *args: str) -> Any:
    result = cli(path, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def schedule_store(store_path: Path, clock) -> Path:
    app = with_report(baton.App(store_path, clock=clock))
    try:
        app.schedule("nightly", "report", "cli", cron="30 2 * * *", timezone="Europe/Berlin")
        app.schedule("minutely", "report", "m", every=60, overlap="allow_all")
        app.launch()
    finally:
        app.shutdown()
    return store_path


def test_cli_schedules_ls(schedule_store: Path) -> None:
    result = cli(schedule_store, "schedules", "ls")
    assert result.exit_code == 0, result.output
    for text in ("nightly", "report@1", "30 2 * * *", "Europe/Berlin", "every 60s", "active"):
        assert text in result.stdout
    docs = ok_json(schedule_store, "schedules", "ls")
    assert [d["name"] for d in docs] == ["minutely", "nightly"]
    nightly = docs[1]
    assert nightly["kind"] == "cron" and nightly["timezone"] == "Europe/Berlin"
    assert nightly["input"] == {"args": ["cli"], "kwargs": {}} and nightly["paused"] is False
    assert nightly["next_fire_at"] == "2024-01-01T01:30:00.000000Z"  # 02:30 CET


def test_cli_pause_resume_and_trigger(schedule_store: Path, make_app) -> None:
    paused = cli(schedule_store, "schedules", "pause", "nightly")
    assert paused.exit_code == 0 and "is paused" in paused.stdout
    assert ok_json(schedule_store, "schedules", "ls")[1]["paused"] is True
    resumed = ok_json(schedule_store, "schedules", "resume", "nightly")
    assert resumed["name"] == "nightly" and resumed["paused"] is False
    text = cli(schedule_store, "schedules", "trigger", "nightly")
    assert text.exit_code == 0 and "enqueued by schedule 'nightly'" in text.stdout
    run = ok_json(schedule_store, "schedules", "trigger", "nightly")
    assert run["status"] == "ENQUEUED" and run["schedule"] == "nightly"
    assert run["input"] == {"args": ["cli"], "kwargs": {}}
    for name in ("nightly", "minutely"):  # a paused schedule can still be triggered
        assert cli(schedule_store, "schedules", "pause", name).exit_code == 0
    # a worker of the app (on wall time, like the command) picks the triggered runs up
    worker = with_report(make_app())
    worker.launch()
    assert worker.handle(run["run_id"]).result(timeout=10) == "clix1"
    wait_until(
        lambda: [r.status for r in scheduled(worker, "nightly")] == ["SUCCEEDED"] * 2,
        what="both triggered runs to finish",
    )


def test_cli_unknown_schedule(schedule_store: Path) -> None:
    for command in ("pause", "resume", "trigger"):
        result = cli(schedule_store, "schedules", command, "nope")
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("error: schedule 'nope': no such schedule")
        assert result.stdout == "" and "Traceback" not in result.output
