"""Forking runs and comparing them (`app.fork`, `baton runs diff`) on real stores."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import astuple
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import baton
from baton.cli.main import app as cli_app
from baton.store.sql.payloads import PREFIX
from dbhelpers import query

calls: Counter[str] = Counter()
state = {"card_ok": True}
runner = CliRunner(env={"BATON_STORE": None, "FORCE_COLOR": None, "TTY_COMPATIBLE": None})


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()
    state["card_ok"] = True


def define(app: baton.App, retry: baton.Retry | None = None) -> None:
    """`checkout`: reserve (step 1), charge (step 2), ship (step 3)."""

    @app.step(name="reserve")
    def reserve(order: str) -> str:
        calls["reserve"] += 1
        return f"res-{order}"

    @app.step(name="charge", retry=retry)
    def charge(order: str, amount: int) -> int:
        calls["charge"] += 1
        if not state["card_ok"]:
            raise RuntimeError(f"card for {order} declined")
        return amount * 100

    @app.step(name="ship")
    def ship(order: str, cents: int) -> str:
        calls["ship"] += 1
        return f"ship-{order}-{cents}"

    @app.workflow(name="checkout")
    def checkout(order: str, amount: int) -> dict:
        reservation = reserve(order)
        cents = charge(order, amount)
        return {"reservation": reservation, "cents": cents, "tracking": ship(order, cents)}


def finished_run(app: baton.App) -> baton.RunHandle:
    handle = app.start("checkout", "o-1", 5)
    assert handle.result(timeout=10) == {
        "reservation": "res-o-1",
        "cents": 500,
        "tracking": "ship-o-1-500",
    }
    calls.clear()
    return handle


def counts(store: Path | str) -> tuple[int, int, int]:
    """(runs, steps, events) rows in the store."""
    return tuple(  # type: ignore[return-value]
        query(store, f"SELECT COUNT(*) FROM {table}")[0][0] for table in ("runs", "steps", "events")
    )


# -- app.fork ------------------------------------------------------------------------------------
def test_fork_reuses_earlier_steps_and_reruns_the_rest_with_new_input(make_app) -> None:
    app = make_app()
    define(app)
    source = finished_run(app)

    fork = app.fork(source.id, from_step=2, input={"args": ["o-1", 7]})
    assert fork.id != source.id
    assert fork.result(timeout=10) == {
        "reservation": "res-o-1",
        "cents": 700,
        "tracking": "ship-o-1-700",
    }
    assert calls == {"charge": 1, "ship": 1}  # step 1 came from the copied checkpoint

    info = fork.info()
    assert info.forked_from == source.id and info.workflow == "checkout"
    assert json.loads(info.input) == {"args": ["o-1", 7], "kwargs": {}}
    assert info.correlation_id == source.info().correlation_id
    copied, *rerun = app.steps(fork.id)
    original = app.steps(source.id)
    assert astuple(copied)[1:] == astuple(original[0])[1:]  # every column but run_id
    assert copied.run_id == fork.id
    assert [(s.seq, s.name, json.loads(s.output)) for s in rerun] == [
        (2, "charge", 700),
        (3, "ship", "ship-o-1-700"),
    ]
    # the source is untouched
    assert source.result(timeout=1)["cents"] == 500
    assert [json.loads(s.output) for s in app.steps(source.id)] == [
        "res-o-1",
        500,
        "ship-o-1-500",
    ]

    (forked,) = app.events(run_id=fork.id, type="baton.run.forked")
    assert json.loads(forked.data) == {
        "workflow": "checkout",
        "version": "1",
        "from_run": source.id,
        "from_step": 2,
    }
    types = [e.type for e in app.events(run_id=fork.id)]
    assert types[:2] == ["baton.run.forked", "baton.run.enqueued"]
    assert types[-1] == "baton.run.succeeded"


def test_fork_without_input_reuses_the_source_input(make_app) -> None:
    app = make_app()
    define(app)
    source = finished_run(app)
    fork = app.fork(source.id, from_step=3)
    assert fork.result(timeout=10) == source.result()
    assert fork.info().input == source.info().input
    assert calls == {"ship": 1}


def test_fork_from_step_one_and_from_after_the_last_step(make_app) -> None:
    app = make_app()
    define(app)
    source = finished_run(app)

    fresh = app.fork(source.id, from_step=1, input={"args": ["o-2"], "kwargs": {"amount": 1}})
    assert fresh.result(timeout=10)["tracking"] == "ship-o-2-100"
    assert calls == {"reserve": 1, "charge": 1, "ship": 1}  # nothing copied

    calls.clear()
    replay = app.fork(source.id, from_step=4)  # every step copied: nothing runs again
    assert replay.result(timeout=10) == source.result()
    assert calls == {}
    assert len(app.steps(replay.id)) == 3


def test_fork_of_a_dead_run(make_app) -> None:
    app = make_app()
    define(app, retry=baton.Retry(max_attempts=2, initial=0.001, jitter=False))
    state["card_ok"] = False
    dead = app.start("checkout", "o-3", 2)
    with pytest.raises(baton.RunFailed):
        dead.result(timeout=10)
    assert dead.status() == baton.RunStatus.DEAD
    assert calls == {"reserve": 1, "charge": 2}

    state["card_ok"] = True
    calls.clear()
    fork = app.fork(dead.id, from_step=2)
    assert fork.result(timeout=10)["tracking"] == "ship-o-3-200"
    assert calls == {"charge": 1, "ship": 1}
    assert dead.status() == baton.RunStatus.DEAD  # the dead-letter entry stays as it was
    assert [r.run_id for r in app.dead_letters()] == [dead.id]


def test_fork_of_a_failed_run_past_its_failed_step(make_app) -> None:
    """Only successful checkpoints are copied: a failed step below from_step runs again."""
    app = make_app()
    define(app)  # no retry policy: the error fails the run
    state["card_ok"] = False
    failed = app.start("checkout", "o-4", 3)
    with pytest.raises(baton.RunFailed):
        failed.result(timeout=10)
    assert failed.status() == baton.RunStatus.FAILED
    assert [s.status for s in app.steps(failed.id)] == ["SUCCEEDED", "FAILED"]

    state["card_ok"] = True
    calls.clear()
    fork = app.fork(failed.id, from_step=3)  # the highest recorded step (2) + 1
    assert fork.result(timeout=10)["cents"] == 300
    assert calls == {"charge": 1, "ship": 1}


def test_fork_keeps_the_source_version(make_app) -> None:
    app = make_app()

    @app.step(name="label")
    def label(text: str) -> str:
        calls["label"] += 1
        return f"<{text}>"

    @app.workflow(name="greet", version="1")
    def greet_v1(name: str) -> str:
        return "v1 " + label(name)

    @app.workflow(name="greet", version="2")
    def greet_v2(name: str) -> str:
        return "v2 " + label(name)

    old = app.start("greet", "ada", version="1")
    assert old.result(timeout=10) == "v1 <ada>"
    fork = app.fork(old.id, from_step=1, input={"args": ["bob"]})
    assert fork.result(timeout=10) == "v1 <bob>"
    assert fork.info().version == "1"


def test_fork_shares_large_payloads(make_app, store_path: Path) -> None:
    app = make_app(payload_threshold=256)
    define(app)
    big = "o-" + "9" * 1000
    source = app.start("checkout", big, 1)
    source.result(timeout=10)
    ((before,),) = query(store_path, "SELECT COUNT(*) FROM payloads")
    fork = app.fork(source.id, from_step=2, input={"args": [big, 2]})
    assert fork.result(timeout=10)["reservation"] == f"res-{big}"
    ((copied,),) = query(
        store_path, "SELECT output FROM steps WHERE run_id = ? AND seq = 1", fork.id
    )
    assert copied.startswith(PREFIX)  # the copy shares the source's payload row
    ((after,),) = query(store_path, "SELECT COUNT(*) FROM payloads")
    # the new input, ship's new output and the new run output; reserve's output is shared
    assert after == before + 3


# -- bad input: a typed error, nothing written ---------------------------------------------------
def test_fork_of_an_unknown_run(make_app, store_path: Path) -> None:
    app = make_app()
    define(app)
    finished_run(app)
    before = counts(store_path)
    with pytest.raises(baton.RunNotFound, match="no run with id nope"):
        app.fork("nope", from_step=1)
    assert counts(store_path) == before


@pytest.mark.parametrize("step", [0, -1, 5, 100])
def test_fork_from_a_step_the_run_never_reached(make_app, store_path: Path, step: int) -> None:
    app = make_app()
    define(app)
    source = finished_run(app)
    before = counts(store_path)
    with pytest.raises(baton.StepNotFound) as info:
        app.fork(source.id, from_step=step)
    err = info.value
    assert (err.run_id, err.step, err.highest) == (source.id, step, 3)
    assert source.id in str(err) and "highest recorded step is 3" in str(err)
    assert "between 1 and 4" in str(err)
    assert counts(store_path) == before
    assert calls == {}


def test_fork_of_a_run_without_steps(make_app, store_path: Path) -> None:
    app = make_app()

    @app.workflow(name="hello")
    def hello(name: str) -> str:
        return f"hello {name}"

    source = app.start("hello", "ada")
    source.result(timeout=10)
    before = counts(store_path)
    with pytest.raises(baton.StepNotFound, match="it has recorded no steps"):
        app.fork(source.id, from_step=2)
    assert counts(store_path) == before
    assert app.fork(source.id, from_step=1, input={"args": ["bob"]}).result(10) == "hello bob"


def test_fork_of_a_version_this_app_does_not_serve(make_app, store_path: Path) -> None:
    app = make_app()
    define(app)
    source = finished_run(app)
    app.shutdown()

    newer = make_app(worker=False)

    @newer.workflow(name="checkout", version="2")
    def checkout_v2(order: str, amount: int) -> str:
        return "v2"

    before = counts(store_path)
    with pytest.raises(baton.UnknownWorkflow) as info:
        newer.fork(source.id, from_step=2)
    assert info.value.name == "checkout" and info.value.version == "1"
    assert "checkout@2" in str(info.value)
    assert counts(store_path) == before


@pytest.mark.parametrize(
    ("from_step", "input", "error"),
    [
        ("2", None, "from_step must be an int"),
        (True, None, "from_step must be an int"),
        (2, ["o-1", 7], "input= takes"),
        (2, {"args": ["o-1"], "amount": 7}, "input= takes"),
        (2, {"args": "o-1"}, 'input\\["args"\\] must be a list'),
        (2, {"kwargs": {1: 2}}, 'input\\["kwargs"\\] must be a dict'),
    ],
)
def test_fork_with_bad_arguments(
    make_app, store_path: Path, from_step: Any, input: Any, error: str
) -> None:
    app = make_app()
    define(app)
    source = finished_run(app)
    before = counts(store_path)
    with pytest.raises(TypeError, match=error):
        app.fork(source.id, from_step=from_step, input=input)
    assert counts(store_path) == before


def test_fork_with_unserializable_input(make_app, store_path: Path) -> None:
    app = make_app()
    define(app)
    source = finished_run(app)
    before = counts(store_path)
    with pytest.raises(baton.SerializationError, match=r"\$.args\[1\]"):
        app.fork(source.id, from_step=2, input={"args": ["o-1", object()]})
    assert counts(store_path) == before


# -- baton runs diff ------------------------------------------------------------------------------
def cli(path: Path, *args: str) -> Result:
    return runner.invoke(cli_app, ["--store", str(path), *args])


@pytest.fixture
def forked(make_app, store_path: Path) -> tuple[str, str, str]:
    """(a DEAD run, its successful fork with other input, another successful run)."""
    app = make_app()
    define(app, retry=baton.Retry(max_attempts=2, initial=0.001, jitter=False))
    state["card_ok"] = False
    dead = app.start("checkout", "o-5", 2)
    with pytest.raises(baton.RunFailed):
        dead.result(timeout=10)
    state["card_ok"] = True
    fork = app.fork(dead.id, from_step=2, input={"args": ["o-5", 3]})
    fork.result(timeout=10)
    other = app.start("checkout", "o-5", 3)
    other.result(timeout=10)
    app.shutdown()
    return dead.id, fork.id, other.id


def test_runs_diff_table(store_path: Path, forked: tuple[str, str, str]) -> None:
    dead, fork, _ = forked
    result = cli(store_path, "runs", "diff", dead, fork)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert dead in out and fork in out and "checkout@1" in out
    for header in ("seq", "step A", "step B", "status A", "status B", "output A", "output B"):
        assert header in out
    assert "forked from" in out and "DEAD" in out and "SUCCEEDED" in out
    assert '{"args": ["o-5", 2], "kwargs": {}}' in out  # the inputs
    assert '{"args": ["o-5", 3], "kwargs": {}}' in out
    assert "RuntimeError: card for o-5 declined" in out  # A's failed charge
    assert '"ship-o-5-300"' in out  # B's output of a step A never reached
    assert "the steps differ from step 2 on" in out
    steps = {line.split()[0]: line for line in out.splitlines() if line[:1] in ("1", "2", "3")}
    assert "reserve" in steps["1"] and "≠" not in steps["1"]  # the same in both runs
    assert "declined" in steps["2"] and "300" in steps["2"] and "≠" in steps["2"]
    assert "ship-o-5-300" in steps["3"] and " - " in steps["3"] and "≠" in steps["3"]
    (output,) = [line for line in out.splitlines() if line.startswith("output ")]
    assert " - " in output and "≠" in output  # A has no output


def test_runs_diff_json(store_path: Path, forked: tuple[str, str, str]) -> None:
    dead, fork, _ = forked
    result = cli(store_path, "runs", "diff", dead, fork, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"a", "b", "input", "output", "error", "steps", "first_difference"}
    assert doc["a"]["run_id"] == dead and doc["b"]["run_id"] == fork
    assert doc["b"]["forked_from"] == dead and doc["a"]["forked_from"] is None
    assert doc["input"] == {
        "a": {"args": ["o-5", 2], "kwargs": {}},
        "b": {"args": ["o-5", 3], "kwargs": {}},
        "same": False,
    }
    assert doc["output"]["a"] is None and doc["output"]["b"]["cents"] == 300
    assert doc["error"]["a"]["type"] == "RuntimeError" and doc["error"]["b"] is None
    assert doc["first_difference"] == 2
    steps = doc["steps"]
    assert [(s["seq"], s["same"]) for s in steps] == [(1, True), (2, False), (3, False)]
    assert steps[0]["a"]["output"] == steps[0]["b"]["output"] == "res-o-5"
    assert steps[1]["a"]["status"] == "FAILED" and steps[1]["b"]["output"] == 300
    assert steps[2]["a"] is None and steps[2]["b"]["name"] == "ship"


def test_runs_diff_of_runs_that_agree(store_path: Path, forked: tuple[str, str, str]) -> None:
    _, fork, other = forked
    doc = json.loads(cli(store_path, "runs", "diff", fork, other, "--json").stdout)
    assert doc["first_difference"] is None and doc["input"]["same"] and doc["output"]["same"]
    assert all(s["same"] for s in doc["steps"])
    result = cli(store_path, "runs", "diff", fork, other)
    assert result.exit_code == 0, result.output
    assert "the steps are the same" in result.stdout


def test_runs_diff_unknown_run(store_path: Path, forked: tuple[str, str, str]) -> None:
    dead = forked[0]
    for args in ((dead, "nope"), ("nope", dead), ("nope", dead, "--json")):
        result = cli(store_path, "runs", "diff", *args)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("error: no run with id nope")
        assert result.stdout == "" and "Traceback" not in result.output
