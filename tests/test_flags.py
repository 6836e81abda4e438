"""Feature flags on real stores (SQLite, PostgreSQL): the store calls and their events, the
App's cached reads on a virtual clock, changes seen by other Apps and other processes, bad
values, and `baton.flag()` inside running workflows and steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import baton
from baton.core.events import FLAG_CHANGED
from baton.engine.flags import TTL
from baton.store import open_store

SRC = str(Path(__file__).resolve().parents[1] / "src")


def changes(app: baton.App) -> list[dict[str, Any]]:
    return [json.loads(e.data or "null") for e in app.events(type=FLAG_CHANGED, limit=1000)]


# -- the store -----------------------------------------------------------------------------------
def test_store_set_get_list_delete_and_events(store_path: str | Path) -> None:
    store = open_store(store_path)
    try:
        assert store.get_flag("new-pricing") is None
        assert store.list_flags() == {}
        assert store.set_flag("new-pricing", "true", 100.0, "alice", "src-a").result() is None
        assert store.set_flag("limits", '{"max":5}', 101.0).result() is None
        assert store.set_flag("new-pricing", "false", 102.0, "bob").result() == "true"
        assert store.get_flag("new-pricing") == "false"
        assert store.list_flags() == {"limits": '{"max":5}', "new-pricing": "false"}
        assert store.delete_flag("limits", 103.0, "carol").result() is True
        assert store.delete_flag("limits", 104.0).result() is False  # nothing to delete
        assert store.list_flags() == {"new-pricing": "false"}

        events = store.list_events(type=FLAG_CHANGED)
        assert [(e.subject, e.time, e.source) for e in events] == [
            ("new-pricing", 100.0, "src-a"),
            ("limits", 101.0, "baton"),
            ("new-pricing", 102.0, "baton"),
            ("limits", 103.0, "baton"),
        ]
        data = [json.loads(e.data) for e in events]
        assert data[0] == {
            "name": "new-pricing",
            "value": True,
            "previous": None,
            "deleted": False,
            "by": "alice",
        }
        assert data[2] == {
            "name": "new-pricing",
            "value": False,
            "previous": True,
            "deleted": False,
            "by": "bob",
        }
        assert data[3] == {
            "name": "limits",
            "value": None,
            "previous": {"max": 5},
            "deleted": True,
            "by": "carol",
        }
        assert all(e.run_id is None and e.correlation_id is None for e in events)
    finally:
        store.close()


def test_store_refuses_text_that_is_not_json(store_path: str | Path) -> None:
    store = open_store(store_path)
    try:
        with pytest.raises(ValueError):
            store.set_flag("x", "not json", 1.0)
        assert store.list_flags() == {}
        assert store.list_events(type=FLAG_CHANGED) == []
    finally:
        store.close()


def test_flags_survive_reopening_the_store(store_path: str | Path) -> None:
    store = open_store(store_path)
    store.set_flag("x", "[1,2]", 1.0).result()
    store.close()
    store = open_store(store_path)
    try:
        assert store.get_flag("x") == "[1,2]"
    finally:
        store.close()


# -- app.flags -----------------------------------------------------------------------------------
def test_get_set_delete_all_and_defaults(make_app: Callable[..., baton.App]) -> None:
    app = make_app(worker=False)
    flags = app.flags
    assert flags.get("new-pricing") is None
    assert flags.get("new-pricing", "fallback") == "fallback"
    flags.defaults({"new-pricing": False, "rollout": {"percent": 10}})
    assert flags.get("new-pricing", "fallback") is False  # a registered default wins
    assert flags.all() == {"new-pricing": False, "rollout": {"percent": 10}}

    flags.set("new-pricing", True, by="alice")
    flags.set("colour", "blue")
    assert flags.get("new-pricing") is True
    assert flags.all() == {"new-pricing": True, "rollout": {"percent": 10}, "colour": "blue"}

    assert flags.delete("new-pricing", by="bob") is True
    assert flags.get("new-pricing") is False  # the default again
    assert flags.delete("new-pricing") is False
    assert flags.delete("never-set") is False

    assert [(c["name"], c["value"], c["deleted"], c["by"]) for c in changes(app)] == [
        ("new-pricing", True, False, "alice"),
        ("colour", "blue", False, None),
        ("new-pricing", None, True, "bob"),
    ]
    assert {e.source for e in app.events(type=FLAG_CHANGED)} == {app.source}


def test_values_of_every_json_kind_round_trip(make_app: Callable[..., baton.App]) -> None:
    app = make_app(worker=False)
    values = {
        "null": None,
        "bool": True,
        "int": 42,
        "float": 0.25,
        "text": "héllo",
        "list": [1, "two", None],
        "object": {"a": {"b": [1, 2]}},
    }
    for name, value in values.items():
        app.flags.set(name, value)
    assert app.flags.all() == values
    assert app.flags.get("null", "default") is None  # a stored null is a value


def test_a_read_value_is_a_copy(make_app: Callable[..., baton.App]) -> None:
    app = make_app(worker=False)
    app.flags.set("limits", {"max": 5})
    app.flags.defaults({"tags": ["a"]})
    app.flags.get("limits")["max"] = 99
    app.flags.get("tags").append("b")
    app.flags.all()["limits"]["max"] = 98
    assert app.flags.get("limits") == {"max": 5}
    assert app.flags.get("tags") == ["a"]


def test_bad_values_and_names_are_refused(make_app: Callable[..., baton.App]) -> None:
    app = make_app(worker=False)
    with pytest.raises(baton.SerializationError, match=r"flag 'when' at \$ is a set"):
        app.flags.set("when", {1, 2})
    with pytest.raises(
        baton.SerializationError, match=r"flag 'cfg' at \$\.rate is a float \(nan\)"
    ):
        app.flags.set("cfg", {"rate": float("nan")})
    with pytest.raises(baton.SerializationError, match=r"flag 'obj' at \$\[0\] is a object"):
        app.flags.set("obj", [object()])
    with pytest.raises(ValueError, match="non-empty name"):
        app.flags.set("", True)
    with pytest.raises(ValueError, match="non-empty name"):
        app.flags.set(3, True)  # type: ignore[arg-type]
    with pytest.raises(baton.SerializationError, match="flag 'd'"):
        app.flags.defaults({"ok": 1, "d": {1}})
    assert app.flags.all() == {}  # nothing stored, no default registered
    assert changes(app) == []


def test_reads_are_cached_for_the_ttl_of_the_apps_clock(store_path: str | Path) -> None:
    clock = baton.VirtualClock()
    app = baton.App(store_path, clock=clock, worker=False)
    other = open_store(store_path)  # another process's writes, as the store sees them
    try:
        app.flags.set("mode", "a")
        assert app.flags.get("mode") == "a"
        other.set_flag("mode", '"b"', clock.now()).result()
        other.set_flag("extra", "1", clock.now()).result()
        assert app.flags.get("mode") == "a"  # cached
        assert "extra" not in app.flags.all()
        clock.advance(TTL * 0.9)
        assert app.flags.get("mode") == "a"
        clock.advance(TTL * 0.2)  # past the TTL: read again
        assert app.flags.get("mode") == "b"
        assert app.flags.get("extra") == 1

        other.delete_flag("mode").result()
        assert app.flags.get("mode") == "b"
        clock.advance(TTL)
        assert app.flags.get("mode") is None

        # a set through this App is seen at once, whatever the clock says
        app.flags.set("mode", "c")
        assert app.flags.get("mode") == "c"
        app.flags.delete("mode")
        assert app.flags.get("mode") is None
    finally:
        other.close()
        app.shutdown()


def test_the_cache_costs_no_store_read_in_a_hot_loop(make_app: Callable[..., baton.App]) -> None:
    clock = baton.VirtualClock()
    app = make_app(worker=False, clock=clock)
    app.flags.set("on", True)
    reads = 0
    list_flags = app.store.list_flags

    def counting() -> dict[str, str]:
        nonlocal reads
        reads += 1
        return list_flags()

    app.store.list_flags = counting  # type: ignore[method-assign]
    for _ in range(10_000):
        assert app.flags.get("on") is True
    assert reads == 1
    clock.advance(TTL)
    app.flags.get("on")
    assert reads == 2


def test_a_change_is_seen_by_a_second_app_on_the_store(
    make_app: Callable[..., baton.App],
) -> None:
    clock = baton.VirtualClock()
    first = make_app(worker=False, clock=clock)
    second = make_app(worker=False, clock=clock)
    assert first.flags.get("beta") is None
    second.flags.set("beta", {"users": ["ann"]}, by="ops")
    # the same process and store: the change is seen at once, not after the TTL
    assert first.flags.get("beta") == {"users": ["ann"]}
    second.flags.delete("beta")
    assert first.flags.get("beta") is None


def test_a_change_from_another_process_is_seen_within_the_ttl(store_path: str | Path) -> None:
    clock = baton.VirtualClock()
    app = baton.App(store_path, clock=clock, worker=False)
    try:
        assert app.flags.get("kill-switch") is None  # cached now
        code = (
            "import sys, baton\n"
            "app = baton.App(sys.argv[1], worker=False)\n"
            "app.flags.set('kill-switch', True, by='pid')\n"
            "app.shutdown()\n"
        )
        env = {**os.environ, "PYTHONPATH": SRC}
        subprocess.run([sys.executable, "-c", code, str(store_path)], env=env, check=True)
        assert app.flags.get("kill-switch") is None  # still within the TTL
        clock.advance(TTL)
        assert app.flags.get("kill-switch") is True
        (change,) = changes(app)
        assert change["by"] == "pid" and change["value"] is True
    finally:
        app.shutdown()


# -- baton.flag() in runs --------------------------------------------------------------------------
def test_baton_flag_in_a_running_workflow_and_step(make_app: Callable[..., baton.App]) -> None:
    app = make_app()
    app.flags.defaults({"discount": 0})

    @app.step()
    def price(amount: int) -> int:
        return amount - baton.flag("discount")

    @app.workflow()
    def checkout(amount: int) -> dict[str, Any]:
        return {
            "body": baton.flag("discount"),
            "unset": baton.flag("never-set", "fallback"),
            "price": price(amount),
        }

    assert checkout(100) == {"body": 0, "unset": "fallback", "price": 100}
    app.flags.set("discount", 15)
    assert checkout(100) == {"body": 15, "unset": "fallback", "price": 85}


def test_baton_flag_in_an_async_workflow_and_step(make_app: Callable[..., baton.App]) -> None:
    app = make_app()
    app.flags.set("greeting", "hi")

    @app.step()
    async def greet(name: str) -> str:
        return f"{baton.flag('greeting')} {name}"

    @app.workflow()
    async def welcome(name: str) -> list[str]:
        return [baton.flag("greeting"), await greet(name)]

    assert welcome("ann") == ["hi", "hi ann"]


def test_baton_flag_finds_the_app_running_the_workflow(
    other_store_path: str | Path, make_app: Callable[..., baton.App]
) -> None:
    one = make_app()
    two = make_app(store=other_store_path)
    one.flags.set("who", "one")
    two.flags.set("who", "two")

    for app in (one, two):

        @app.workflow(name="ask")
        def ask() -> str:
            return baton.flag("who")

    assert one.run("ask") == "one"
    assert two.run("ask") == "two"


def test_a_flag_read_in_a_step_is_checkpointed(make_app: Callable[..., baton.App]) -> None:
    """The documented pattern: a value that must stay the same across a resume is read in a
    step, whose result is recorded."""
    app = make_app()
    app.flags.set("variant", "A")
    reads: list[str] = []

    @app.step()
    def variant() -> str:
        value = baton.flag("variant")
        reads.append(value)
        return value

    @app.step(retry=baton.Retry(max_attempts=3, initial=0.01, jitter=False))
    def flaky(seen: str) -> str:
        if len(reads) == 1:  # the first attempt fails, after the flag has changed
            app.flags.set("variant", "B")
            reads.append("failed")
            raise RuntimeError("try again")
        return seen

    @app.workflow()
    def experiment() -> str:
        return flaky(variant())

    assert experiment() == "A"  # the re-run reads the checkpoint, not the new value
    assert reads == ["A", "failed"]


def test_baton_flag_outside_a_run_returns_the_default(make_app: Callable[..., baton.App]) -> None:
    app = make_app(worker=False)
    app.flags.set("x", 1)

    @app.step()
    def plain() -> Any:
        return baton.flag("x", "default")

    assert baton.flag("x") is None
    assert plain() == "default"  # a step called as a plain function, as in a unit test
