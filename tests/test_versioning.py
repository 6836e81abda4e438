"""Versions side by side, `baton.patched` markers, and the replay check."""

from __future__ import annotations

import json
import textwrap
from collections import Counter

import pytest

import baton
from baton.store.records import RunStatus
from conftest import wait_until
from test_cli import cli

calls: Counter[str] = Counter()


def _define_steps(app: baton.App) -> dict:
    steps = {}
    for name in ("a", "b", "c", "new"):

        def fn(x: int, _name: str = name) -> int:
            calls[_name] += 1
            return x + 1

        steps[name] = app.step(name=name)(fn)
    return steps


def test_runs_stay_pinned_to_their_version(make_app, store_path):
    clock = baton.VirtualClock()
    first = make_app(clock=clock)

    @first.workflow(name="greet", version="1")
    def greet_v1(who: str) -> str:
        baton.sleep(60)
        return f"hello {who}"

    old = first.start("greet", "ann")
    wait_until(lambda: first.get_run(old.id).status == RunStatus.WAITING)
    first.shutdown()

    second = make_app(clock=clock)

    @second.workflow(name="greet", version="1")
    def greet_v1_again(who: str) -> str:
        baton.sleep(60)
        return f"hello {who}"

    @second.workflow(name="greet", version="2")
    def greet_v2(who: str) -> str:
        return f"hi {who}"

    new = second.start("greet", "bob")  # the latest registered version
    assert new.result(timeout=10) == "hi bob"
    assert second.get_run(new.id).version == "2"
    pinned = second.start("greet", "cy", version="1")
    wait_until(lambda: second.get_run(pinned.id).status == RunStatus.WAITING)
    clock.advance(61)
    assert second.handle(old.id).result(timeout=10) == "hello ann"
    assert pinned.result(timeout=10) == "hello cy"
    assert second.get_run(old.id).version == "1"


def test_patched_keeps_old_runs_on_the_old_path(make_app):
    clock = baton.VirtualClock()
    first = make_app(clock=clock)
    steps = _define_steps(first)

    @first.workflow(name="flow")
    def flow_old(x: int) -> int:
        x = steps["a"](x)
        baton.sleep(60)
        return steps["b"](x)

    old = first.start("flow", 0)
    wait_until(lambda: first.get_run(old.id).status == RunStatus.WAITING)
    first.shutdown()

    second = make_app(clock=clock)
    steps = _define_steps(second)
    seen: list[bool] = []

    @second.workflow(name="flow")
    def flow_new(x: int) -> int:
        x = steps["a"](x)
        is_new = baton.patched("extra-step")
        seen.append(is_new)
        if is_new:
            x = steps["new"](x)
        baton.sleep(60)
        return steps["b"](x)

    calls.clear()
    fresh = second.start("flow", 0)
    wait_until(lambda: second.get_run(fresh.id).status == RunStatus.WAITING)
    clock.advance(61)
    assert second.handle(old.id).result(timeout=10) == 2  # a, b: the old path
    assert fresh.result(timeout=10) == 3  # a, new, b
    assert calls["new"] == 1
    kinds = [s.kind for s in second.steps(fresh.id)]
    assert kinds == ["step", "patch", "step", "sleep", "step"]
    assert all(r.outcome == "ok" for r in second.replay_check())


def test_replay_check_finds_a_reordered_step_and_runs_nothing(make_app):
    app = make_app()
    steps = _define_steps(app)

    @app.workflow(name="abc")
    def abc(x: int) -> int:
        return steps["c"](steps["b"](steps["a"](x)))

    handle = app.start("abc", 1)
    assert handle.result(timeout=10) == 4
    assert [r.outcome for r in app.replay_check()] == ["ok"]

    changed = baton.App(app.store, worker=False)
    steps2 = _define_steps(changed)

    @changed.workflow(name="abc")
    def bac(x: int) -> int:
        return steps2["c"](steps2["a"](steps2["b"](x)))

    events_before = len(app.events(limit=1000))
    calls.clear()
    [result] = changed.replay_check()
    assert result.outcome == "diverged" and result.failed
    assert result.seq == 1
    assert "'a'" in result.message and "'b'" in result.message
    assert sum(calls.values()) == 0  # no step ran
    assert len(app.events(limit=1000)) == events_before  # nothing written


def test_replay_check_reports_extra_and_missing_steps_and_unserved_versions(make_app):
    app = make_app()
    steps = _define_steps(app)

    @app.workflow(name="two", version="7")
    def two(x: int) -> int:
        return steps["b"](steps["a"](x))

    app.run("two", 1)
    shorter = baton.App(app.store, worker=False)
    steps2 = _define_steps(shorter)

    @shorter.workflow(name="two", version="7")
    def one(x: int) -> int:
        return steps2["a"](x)

    [result] = shorter.replay_check()
    assert result.outcome == "diverged" and result.seq == 2

    unrelated = baton.App(app.store, worker=False)
    [result] = unrelated.replay_check()
    assert result.outcome == "unserved"
    assert not result.failed  # a finished run needs no code


def test_replay_check_cli(make_app, store_path, tmp_path, monkeypatch):
    app = make_app()
    steps = _define_steps(app)

    @app.workflow(name="abc")
    def abc(x: int) -> int:
        return steps["b"](steps["a"](x))

    app.run("abc", 1)
    module = tmp_path / "replaymod.py"
    body = """
        import baton

        app = baton.App({path!r}, worker=False)

        @app.step(name="a")
        def a(x):
            return x + 1

        @app.step(name="b")
        def b(x):
            return x + 1

        @app.workflow(name="abc")
        def abc(x):
            return {order}
        """
    module.write_text(textwrap.dedent(body).format(path=str(store_path), order="b(a(x))"))
    monkeypatch.chdir(tmp_path)
    good = cli(store_path, "replay-check", "--app", "replaymod:app")
    assert good.exit_code == 0, good.output
    assert "1 run(s) replayed; 0 problem(s)" in good.stdout

    module.write_text(textwrap.dedent(body).format(path=str(store_path), order="a(b(x))"))
    (tmp_path / "replaymod2.py").write_text(module.read_text())
    bad = cli(store_path, "replay-check", "--app", "replaymod2:app", "--json")
    assert bad.exit_code == 1, bad.output
    doc = json.loads(bad.stdout)
    assert doc["failed"] == 1 and doc["runs"][0]["outcome"] == "diverged"

    missing = cli(store_path, "replay-check", "--app", "nope_module:app")
    assert missing.exit_code == 1 and "cannot import" in missing.stderr


def test_patched_outside_a_workflow():
    with pytest.raises(baton.NotInWorkflow):
        baton.patched("x")
    with pytest.raises(ValueError):
        baton.patched("")
