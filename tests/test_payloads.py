"""Large payloads on real stores (SQLite files, PostgreSQL schemas): stored once by content
hash, never seen as references."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import baton
from baton.cli.main import app as cli_app
from baton.core import serialization
from baton.store import RunRecord, RunStatus, StepRecord, StepStatus, open_store
from baton.store.sql.payloads import PREFIX, resolve, spill
from dbhelpers import connect, query

THRESHOLD = 1024
BIG = "payload-" + "x" * 4000  # well above THRESHOLD once serialized


def raw(store: Path | str, sql: str, *params: Any) -> list[tuple]:
    """Rows as they are stored, read past the store."""
    return query(store, sql, *params)


def digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=32).hexdigest()


def define(app: baton.App) -> None:
    """`report`: its input, the `expand` step's output and its own output are all large."""

    @app.step(name="expand")
    def expand(text: str) -> str:
        return text.upper()

    @app.step(name="measure")
    def measure(text: str) -> int:
        return len(text)

    @app.workflow(name="report")
    def report(text: str) -> dict:
        loud = expand(text)
        return {"text": loud + "!", "length": measure(loud)}


def run_input(*args: Any) -> str:
    return serialization.dumps({"args": list(args), "kwargs": {}})


def test_large_values_round_trip_and_rows_hold_references(make_app, store_path: Path) -> None:
    app = make_app(payload_threshold=THRESHOLD)
    define(app)
    handle = app.start("report", BIG)
    expected = {"text": BIG.upper() + "!", "length": len(BIG)}
    assert handle.result(timeout=10) == expected

    # the engine and every read see values, never references
    run = app.get_run(handle.id)
    assert run is not None and json.loads(run.input) == {"args": [BIG], "kwargs": {}}
    assert json.loads(run.output) == expected
    assert [r.run_id for r in app.runs()] == [handle.id]
    assert json.loads(app.runs()[0].output) == expected
    expand, measure = app.steps(handle.id)
    assert json.loads(expand.output) == BIG.upper() and json.loads(measure.output) == len(BIG)

    # on disk: references for the large columns, the small one inline
    ((stored_input, stored_output),) = raw(
        store_path, "SELECT input, output FROM runs WHERE run_id = ?", handle.id
    )
    step_outputs = [o for (o,) in raw(store_path, "SELECT output FROM steps ORDER BY seq")]
    assert stored_input == PREFIX + digest(run_input(BIG))
    assert stored_output == PREFIX + digest(serialization.dumps(expected))
    assert step_outputs == [PREFIX + digest(json.dumps(BIG.upper())), str(len(BIG))]
    payloads = raw(store_path, "SELECT hash, data, size, created_at FROM payloads")
    assert len(payloads) == 3
    for hash_, data, size, created_at in payloads:
        assert hash_ == digest(data) and size == len(data.encode()) and created_at > 0


def test_identical_large_inputs_are_stored_once(make_app, store_path: Path) -> None:
    app = make_app(payload_threshold=THRESHOLD, worker=False)
    define(app)
    first = app.start("report", BIG)
    second = app.start("report", BIG)
    other = app.start("report", BIG + "?")
    inputs = dict(raw(store_path, "SELECT run_id, input FROM runs"))
    assert inputs[first.id] == inputs[second.id] != inputs[other.id]
    assert raw(store_path, "SELECT COUNT(*) FROM payloads") == [(2,)]
    for handle in (first, second):
        assert json.loads(handle.info().input)["args"] == [BIG]


def test_idempotent_start_returns_the_existing_run_resolved(make_app) -> None:
    app = make_app(payload_threshold=THRESHOLD, worker=False)
    define(app)
    first = app.start("report", BIG, idempotency_key="k-1")
    again = app.start("report", BIG, idempotency_key="k-1")
    assert again.id == first.id and not again.created
    # the store hands back the existing row itself: resolved, not a reference
    existing, created = app.store.create_run(
        RunRecord(
            run_id="another-id",
            workflow="report",
            version="1",
            status=RunStatus.ENQUEUED,
            queue="default",
            priority=0,
            available_at=0.0,
            correlation_id="c",
            input=run_input("small"),
            created_at=0.0,
            updated_at=0.0,
            idempotency_key="k-1",
        ),
        [],
    ).result()
    assert not created and existing.run_id == first.id
    assert existing.input == run_input(BIG)


@pytest.mark.parametrize(("extra", "spilled"), [(-1, False), (0, False), (1, True)])
def test_threshold_boundary(make_app, store_path: Path, extra: int, spilled: bool) -> None:
    """A value exactly at the threshold stays in its row; one character more is spilled."""
    size = THRESHOLD + extra
    app = make_app(payload_threshold=THRESHOLD)

    @app.step(name="fill")
    def fill(n: int) -> str:
        return "e" * n

    @app.workflow(name="edge")
    def edge(pad: str, n: int) -> str:
        return fill(n)

    n = size - 2  # a string of n characters serializes to n + 2
    pad = "y" * (size - len(run_input("", n)))
    assert len(run_input(pad, n)) == size
    handle = app.start("edge", pad, n)
    assert handle.result(timeout=10) == "e" * n

    ((stored_input, stored_output),) = raw(store_path, "SELECT input, output FROM runs")
    ((step_output,),) = raw(store_path, "SELECT output FROM steps")
    for stored, value in (
        (stored_input, run_input(pad, n)),
        (stored_output, json.dumps("e" * n)),
        (step_output, json.dumps("e" * n)),
    ):
        assert len(value) == size
        assert stored == (PREFIX + digest(value) if spilled else value)
    assert raw(store_path, "SELECT COUNT(*) FROM payloads") == [(2 if spilled else 0,)]
    info = handle.info()
    assert info.input == run_input(pad, n) and info.output == json.dumps("e" * n)


@pytest.mark.parametrize(("extra", "spilled"), [(0, False), (1, True)])
def test_threshold_boundary_for_each_column(store_path: Path, extra: int, spilled: bool) -> None:
    """Run input and output, step output and step input: at the threshold inline, above it
    spilled, through the store's own write calls."""
    size = THRESHOLD + extra
    text = json.dumps("s" * (size - 2))
    assert len(text) == size
    store = open_store(store_path, payload_threshold=THRESHOLD)
    try:
        run = RunRecord(
            run_id="r1",
            workflow="wf",
            version="1",
            status=RunStatus.RUNNING,
            queue="default",
            priority=0,
            available_at=0.0,
            correlation_id="r1",
            input=text,
            created_at=1.0,
            updated_at=1.0,
            owner="w",
            fence=1,
        )
        store.create_run(run, []).result()
        step = StepRecord("r1", 1, "charge", "h", StepStatus.SUCCEEDED, 1, 1.0, 2.0, text, None)
        step.input = text
        store.save_step(1, step, []).result()
        retry = StepRecord("r1", 2, "ship", "h", StepStatus.RETRYING, 1, 2.0, 3.0)
        retry.input = text
        store.retry_step_later(1, retry, 10.0, []).result()
        # back to the owner, then finished with a large output and a final step
        store.claim_runs("w", None, 1, 10.0, 30.0, "test").result()
        last = StepRecord("r1", 3, "bill", "h", StepStatus.FAILED, 1, 3.0, 4.0, None, '"e"')
        last.input = text
        store.finish_run("r1", 2, RunStatus.DEAD, text, '"e"', 11.0, [], step=last).result()

        on_disk = raw(store_path, "SELECT input, output FROM runs")[0] + tuple(
            value
            for row in raw(store_path, "SELECT output, input FROM steps ORDER BY seq")
            for value in row
            if value is not None
        )
        assert len(on_disk) == 6
        for value in on_disk:
            assert value == (PREFIX + digest(text) if spilled else text)
        assert raw(store_path, "SELECT COUNT(*) FROM payloads") == [(1 if spilled else 0,)]

        loaded = store.get_run("r1")
        assert loaded is not None and loaded.input == text and loaded.output == text
        steps = store.load_steps("r1")
        assert [s.input for s in steps] == [text, text, text]
        assert steps[0].output == text
    finally:
        store.close()


def test_a_new_app_on_the_same_file_reads_them_back(make_app, store_path: Path) -> None:
    first = make_app(payload_threshold=THRESHOLD)
    define(first)
    done = first.start("report", BIG)
    expected = done.result(timeout=10)
    first.shutdown()
    queued_by = make_app(payload_threshold=THRESHOLD, worker=False)
    define(queued_by)
    queued = queued_by.start("report", BIG + "-later")  # waits for a worker: none here
    queued_by.shutdown()

    # a new process's App, with the default threshold: it claims the queued run (its large
    # input resolved in the claim) and reads the finished one back
    second = make_app()
    define(second)
    assert second.store.payload_threshold == 64 * 1024  # type: ignore[attr-defined]
    assert second.handle(done.id).result(timeout=10) == expected
    assert json.loads(second.steps(done.id)[0].output) == BIG.upper()
    second.launch()
    assert queued.id != done.id
    assert second.handle(queued.id).result(timeout=10) == {
        "text": (BIG + "-later").upper() + "!",
        "length": len(BIG) + len("-later"),
    }


def test_cli_shows_large_values(make_app, store_path: Path) -> None:
    app = make_app(payload_threshold=THRESHOLD)
    define(app)
    handle = app.start("report", BIG)
    handle.result(timeout=10)
    app.shutdown()
    runner = CliRunner(env={"BATON_STORE": None})
    result = runner.invoke(
        cli_app, ["--store", str(store_path), "runs", "show", handle.id, "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["run"]["input"] == {"args": [BIG], "kwargs": {}}
    assert doc["steps"][0]["output"] == BIG.upper()


def test_spill_and_resolve(store_path: Path) -> None:
    open_store(store_path).close()
    with connect(store_path) as conn:
        assert spill(conn, "small", 1.0, 10) == "small"
        assert spill(conn, None, 1.0, 10) is None
        ref = spill(conn, '"' + "z" * 20 + '"', 1.0, 10)
        assert ref == PREFIX + digest('"' + "z" * 20 + '"')
        assert spill(conn, '"' + "z" * 20 + '"', 2.0, 10) == ref  # stored once
        assert conn.execute("SELECT COUNT(*), MIN(created_at) FROM payloads").fetchone() == (1, 1.0)
        assert resolve(conn, ref) == '"' + "z" * 20 + '"'
        assert resolve(conn, '{"a": 1}') == '{"a": 1}' and resolve(conn, None) is None
        with pytest.raises(baton.PayloadMissing) as info:
            resolve(conn, PREFIX + "0" * 64)
        assert isinstance(info.value, baton.StoreError)
        assert info.value.digest == "0" * 64 and "0" * 64 in str(info.value)


def test_a_missing_payload_is_a_clear_error(make_app, store_path: Path) -> None:
    app = make_app(payload_threshold=THRESHOLD, worker=False)
    define(app)
    handle = app.start("report", BIG)
    query(store_path, "DELETE FROM payloads")
    with pytest.raises(baton.PayloadMissing, match=digest(run_input(BIG))):
        app.get_run(handle.id)


@pytest.mark.parametrize("bad", [-1, 1.5, "64k"])
def test_bad_threshold(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ValueError, match="payload_threshold"):
        baton.App(tmp_path / "b.db", payload_threshold=bad, worker=False)
