"""The `baton` command against real stores (SQLite files, PostgreSQL schemas), populated by a
real App that ran workflows."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import baton
from baton.cli.main import app as cli_app
from dbhelpers import pg_target, query, tables

CARD_FIXED = False  # the `charge` step fails until a test sets this (the "fix")
calls: Counter[str] = Counter()
runner = CliRunner(env={"BATON_STORE": None, "FORCE_COLOR": None, "TTY_COMPATIBLE": None})


def build_app(path: Path | str, **options: Any) -> baton.App:
    """An App with a workflow that succeeds and one whose retries run out (DEAD)."""
    app = baton.App(path, poll_interval=0.05, **options)

    @app.step(name="reserve")
    def reserve(order: str) -> str:
        calls["reserve"] += 1
        return f"res-{order}"

    @app.step(name="charge", retry=baton.Retry(max_attempts=2, initial=0.01, jitter=False))
    def charge(order: str) -> str:
        calls["charge"] += 1
        if not CARD_FIXED:
            raise RuntimeError(f"card for {order} declined [code=51]")
        return f"rcpt-{order}"

    @app.workflow(name="greet")
    def greet(name: str) -> str:
        return f"hello {name}"

    @app.workflow(name="checkout", version="2")
    def checkout(order: str) -> dict:
        return {"reservation": reserve(order), "receipt": charge(order)}

    return app


@dataclass
class Store:
    path: Path | str  # a SQLite file, or a PostgreSQL schema's URL
    ok: str  # a SUCCEEDED greet run
    dead: str  # a DEAD checkout run, correlation id "corr-7"


@pytest.fixture
def store(store_path: Path | str) -> Store:
    """A store on each backend, with a SUCCEEDED and a DEAD run."""
    return populate(store_path)


@pytest.fixture
def sqlite_store(sqlite_path: Path) -> Store:
    """A SQLite file with a SUCCEEDED and a DEAD run, for what only a file has."""
    return populate(sqlite_path)


def populate(path: Path | str) -> Store:
    app = build_app(path)
    try:
        ok = app.start("greet", "ada")
        assert ok.result(timeout=10) == "hello ada"
        dead = app.start("checkout", "o-7", correlation_id="corr-7")
        with pytest.raises(baton.RunFailed):
            dead.result(timeout=10)
        assert dead.status() == baton.RunStatus.DEAD
    finally:
        app.shutdown()
    return Store(path, ok.id, dead.id)


def cli(path: Path | str, *args: str, **kwargs: Any) -> Result:
    return runner.invoke(cli_app, ["--store", str(path), *args], **kwargs)


def ok_json(path: Path | str, *args: str) -> Any:
    result = cli(path, *args, "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return json.loads(result.stdout)


def assert_fails(result: Result, *fragments: str) -> None:
    """Exit 1 with `error: ...` on stderr, nothing on stdout, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


# -- runs ls -----------------------------------------------------------------------------------
def test_runs_ls_table_lists_every_run(store: Store) -> None:
    result = cli(store.path, "runs", "ls")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for header in ("run id", "workflow", "status", "queue", "priority", "attempt", "created"):
        assert header in out
    assert "duration" in out and "correlation id" in out
    assert store.ok in out and store.dead in out
    assert "greet@1" in out and "checkout@2" in out
    assert "SUCCEEDED" in out and "DEAD" in out and "corr-7" in out
    assert out.index(store.dead) < out.index(store.ok)  # newest first


def test_runs_ls_json(store: Store) -> None:
    runs = ok_json(store.path, "runs", "ls")
    assert [r["run_id"] for r in runs] == [store.dead, store.ok]
    dead, ok = runs
    assert dead["status"] == "DEAD" and dead["workflow"] == "checkout" and dead["version"] == "2"
    assert dead["correlation_id"] == "corr-7" and dead["attempt"] == 2
    assert dead["error"]["step"] == "charge" and dead["error"]["attempts"] == 2
    assert ok["input"] == {"args": ["ada"], "kwargs": {}}
    assert ok["output"] == "hello ada"
    assert ok["created_at"].endswith("Z") and ok["finished_at"].endswith("Z")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--status", "dead"], {"dead"}),
        (["--status", "Succeeded"], {"ok"}),
        (["-s", "DEAD", "-s", "succeeded"], {"dead", "ok"}),
        (["--status", "dead,succeeded"], {"dead", "ok"}),
        (["--status", "enqueued"], set()),
        (["--workflow", "greet"], {"ok"}),
        (["--workflow", "checkout", "--status", "succeeded"], set()),
        (["--limit", "1"], {"dead"}),
    ],
)
def test_runs_ls_filters(store: Store, flags: list[str], expected: set[str]) -> None:
    ids = {store.ok: "ok", store.dead: "dead"}
    assert {ids[r["run_id"]] for r in ok_json(store.path, "runs", "ls", *flags)} == expected


def test_runs_ls_status_filter_in_table(store: Store) -> None:
    result = cli(store.path, "runs", "ls", "--status", "dead")
    assert result.exit_code == 0, result.output
    assert store.dead in result.stdout and store.ok not in result.stdout
    empty = cli(store.path, "runs", "ls", "--status", "running")
    assert empty.exit_code == 0 and "no runs" in empty.stdout


def test_runs_ls_bad_status(store: Store) -> None:
    result = cli(store.path, "runs", "ls", "--status", "exploded")
    assert_fails(result, "unknown status 'EXPLODED'", "valid statuses:")
    for status in baton.RunStatus:
        assert status.value in result.stderr


# -- runs show -----------------------------------------------------------------------------------
def test_runs_show_table(store: Store) -> None:
    result = cli(store.path, "runs", "show", store.dead)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert store.dead in out and "checkout@2" in out and "DEAD" in out and "corr-7" in out
    assert '"o-7"' in out  # the input, as JSON
    assert "RuntimeError" in out and "card for o-7 declined [code=51]" in out  # not markup
    assert "Traceback (most recent call last)" in out
    assert "steps (2)" in out
    for text in ("seq", "name", "attempts", "started", "reserve", "charge", "SUCCEEDED", "FAILED"):
        assert text in out


def test_runs_show_table_of_a_succeeded_run(store: Store) -> None:
    result = cli(store.path, "runs", "show", store.ok)
    assert result.exit_code == 0, result.output
    assert store.ok in result.stdout and "SUCCEEDED" in result.stdout
    assert '"hello ada"' in result.stdout and "no steps recorded" in result.stdout
    assert "error" not in result.stdout


def test_runs_show_json(store: Store) -> None:
    doc = ok_json(store.path, "runs", "show", store.dead)
    assert set(doc) == {"run", "steps"}
    run, steps = doc["run"], doc["steps"]
    assert run["run_id"] == store.dead and run["status"] == "DEAD"
    assert run["input"] == {"args": ["o-7"], "kwargs": {}} and run["output"] is None
    error = run["error"]
    assert error["type"] == "RuntimeError" and error["step"] == "charge"
    assert error["message"] == "card for o-7 declined [code=51]" and error["attempts"] == 2
    assert "Traceback (most recent call last)" in error["traceback"]
    assert [(s["seq"], s["name"], s["status"], s["attempts"]) for s in steps] == [
        (1, "reserve", "SUCCEEDED", 1),
        (2, "charge", "FAILED", 2),
    ]
    assert steps[0]["output"] == "res-o-7" and steps[0]["error"] is None
    assert steps[1]["error"]["type"] == "RuntimeError"


def test_runs_show_unknown_run(store: Store) -> None:
    assert_fails(cli(store.path, "runs", "show", "no-such-run"), "no run with id no-such-run")
    assert_fails(cli(store.path, "runs", "show", "no-such-run", "--json"), "no run with id")


# -- runs cancel ---------------------------------------------------------------------------------
def test_cancel_an_enqueued_run(store: Store) -> None:
    app = build_app(store.path, worker=False)  # no worker: the run stays queued
    try:
        queued = app.start("greet", "bob")
        other = app.start("greet", "eve")
    finally:
        app.shutdown()
    assert ok_json(store.path, "runs", "show", queued.id)["run"]["status"] == "ENQUEUED"

    result = cli(store.path, "runs", "cancel", queued.id)
    assert result.exit_code == 0, result.output
    assert queued.id in result.stdout and "CANCELLED" in result.stdout
    cancelled = ok_json(store.path, "runs", "ls", "--status", "cancelled")
    assert [r["run_id"] for r in cancelled] == [queued.id]

    doc = ok_json(store.path, "runs", "cancel", other.id)
    assert doc["run_id"] == other.id and doc["status"] == "CANCELLED"
    events = ok_json(store.path, "events", "ls", "--run", queued.id)
    assert events[-1]["type"] == "baton.run.cancelled"
    assert events[-1]["data"]["previous"] == "ENQUEUED"

    again = cli(store.path, "runs", "cancel", queued.id)
    assert_fails(again, f"cannot cancel run {queued.id}: it is CANCELLED")


def test_cancel_errors(store: Store) -> None:
    assert_fails(cli(store.path, "runs", "cancel", "nope"), "no run with id nope")
    assert_fails(cli(store.path, "runs", "cancel", store.ok), "it is SUCCEEDED")


# -- dlq -----------------------------------------------------------------------------------------
def test_dlq_ls_table(store: Store) -> None:
    result = cli(store.path, "dlq", "ls")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for header in ("run id", "workflow", "failed step", "error", "attempts", "finished"):
        assert header in out
    assert store.dead in out and store.ok not in out
    assert "checkout@2" in out and "charge" in out
    assert "RuntimeError: card for o-7 declined [code=51]" in out


def test_dlq_ls_json_and_workflow_filter(store: Store) -> None:
    dead = ok_json(store.path, "dlq", "ls")
    assert [r["run_id"] for r in dead] == [store.dead]
    assert dead[0]["status"] == "DEAD" and dead[0]["error"]["step"] == "charge"
    assert ok_json(store.path, "dlq", "ls", "--workflow", "checkout", "--limit", "5") == dead
    assert ok_json(store.path, "dlq", "ls", "--workflow", "greet") == []
    empty = cli(store.path, "dlq", "ls", "--workflow", "greet")
    assert empty.exit_code == 0 and "dead-letter queue is empty" in empty.stdout


def test_dlq_redrive_then_a_worker_finishes_the_run(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = cli(store.path, "dlq", "redrive", store.dead)
    assert result.exit_code == 0, result.output
    assert store.dead in result.stdout and "back in queue 'default'" in result.stdout
    assert "worker" in result.stdout
    run = ok_json(store.path, "runs", "show", store.dead)["run"]
    assert run["status"] == "ENQUEUED" and run["error"] is None
    assert ok_json(store.path, "dlq", "ls") == []
    redriven = ok_json(store.path, "events", "ls", "--type", "baton.run.redriven")
    assert [(e["runid"], e["data"]["previous"]) for e in redriven] == [(store.dead, "DEAD")]

    monkeypatch.setattr(sys.modules[__name__], "CARD_FIXED", True)  # fix the card
    calls.clear()
    app = build_app(store.path).launch()
    try:
        output = app.handle(store.dead).result(timeout=10)
    finally:
        app.shutdown()
    assert output == {"reservation": "res-o-7", "receipt": "rcpt-o-7"}
    assert calls == {"charge": 1}  # resumed at the failed step: `reserve` did not run again
    doc = ok_json(store.path, "runs", "show", store.dead)
    assert doc["run"]["status"] == "SUCCEEDED" and doc["run"]["output"] == output
    assert [s["status"] for s in doc["steps"]] == ["SUCCEEDED", "SUCCEEDED"]


def test_dlq_redrive_json(store: Store) -> None:
    doc = ok_json(store.path, "dlq", "redrive", store.dead)
    assert doc["run_id"] == store.dead and doc["status"] == "ENQUEUED"


def test_dlq_redrive_errors(store: Store) -> None:
    assert_fails(cli(store.path, "dlq", "redrive", "nope"), "no run with id nope")
    result = cli(store.path, "dlq", "redrive", store.ok)
    assert_fails(result, f"cannot redrive run {store.ok}: it is SUCCEEDED")


# -- events --------------------------------------------------------------------------------------
def test_events_ls_table(store: Store) -> None:
    result = cli(store.path, "events", "ls")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("seq", "time", "type", "run id", "correlation id", "data"):
        assert text in out
    assert store.ok in out and store.dead in out and "corr-7" in out
    assert "baton.run.succeeded" in out and "baton.run.dead" in out
    filtered = cli(store.path, "events", "ls", "--run", store.ok, "--type", "baton.run.enqueued")
    assert filtered.exit_code == 0, filtered.output
    assert "baton.run.enqueued" in filtered.stdout and "baton.run.started" not in filtered.stdout
    assert store.dead not in filtered.stdout


def test_events_ls_json_is_cloudevents(store: Store) -> None:
    events = ok_json(store.path, "events", "ls", "--run", store.ok)
    assert [e["type"] for e in events] == [
        "baton.run.enqueued",
        "baton.run.started",
        "baton.run.succeeded",
    ]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    for event in events:
        assert event["specversion"] == "1.0"
        assert event["runid"] == event["subject"] == event["correlationid"] == store.ok
        assert event["source"].startswith("baton://") and event["id"]
        assert event["time"].endswith("Z") and "T" in event["time"]
        assert event["data"]["workflow"] == "greet"


def test_events_ls_filters(store: Store) -> None:
    dead = ok_json(store.path, "events", "ls", "--type", "baton.run.dead")
    assert [e["runid"] for e in dead] == [store.dead]
    assert dead[0]["data"]["step"] == "charge" and dead[0]["data"]["attempts"] == 2

    retrying = ok_json(store.path, "events", "ls", "--run", store.dead, "-t", "baton.step.retrying")
    assert len(retrying) == 1 and retrying[0]["data"]["error"]["type"] == "RuntimeError"
    assert ok_json(store.path, "events", "ls", "--run", store.ok, "-t", "baton.run.dead") == []

    correlated = ok_json(store.path, "events", "ls", "--correlation", "corr-7")
    assert correlated and {e["runid"] for e in correlated} == {store.dead}

    everything = ok_json(store.path, "events", "ls", "--limit", "1000")
    middle = everything[len(everything) // 2]["seq"]
    later = ok_json(store.path, "events", "ls", "--after", str(middle), "--limit", "1000")
    assert later == [e for e in everything if e["seq"] > middle]
    assert len(ok_json(store.path, "events", "ls", "--limit", "2")) == 2


# -- locating the store ----------------------------------------------------------------------------
def test_store_from_env(store: Store) -> None:
    result = runner.invoke(cli_app, ["runs", "ls", "--json"], env={"BATON_STORE": str(store.path)})
    assert result.exit_code == 0, result.output
    assert {r["run_id"] for r in json.loads(result.stdout)} == {store.ok, store.dead}


def test_sqlite_url(sqlite_store: Store) -> None:
    url = f"sqlite:///{sqlite_store.path}"  # an absolute path: sqlite:////tmp/...
    assert len(ok_json(url, "runs", "ls")) == 2


def test_relative_sqlite_url(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    path = Path(sqlite_store.path)
    monkeypatch.chdir(path.parent)
    assert len(ok_json(f"sqlite:///{path.name}", "dlq", "ls")) == 1


def test_missing_store_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "baton.db"
    for args in (["runs", "ls"], ["events", "ls", "--json"], ["dlq", "redrive", "x"]):
        result = cli(missing, *args)
        assert_fails(result, f"no Baton store at {missing} (set --store or BATON_STORE)")
    assert_fails(cli(f"sqlite:///{missing}", "runs", "ls"), f"no Baton store at {missing}")
    assert not (tmp_path / "nowhere").exists()


def test_default_store_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli_app, ["runs", "ls"])
    assert_fails(result, "no Baton store at .baton/baton.db (set --store or BATON_STORE)")
    assert not (tmp_path / ".baton").exists()


def test_junk_file_is_not_a_store(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    content = bytes(range(256)) * 16
    junk.write_bytes(content)
    assert_fails(cli(junk, "runs", "ls"), f"{junk} is not a Baton store")
    assert junk.read_bytes() == content  # left untouched


def test_empty_file_is_not_turned_into_a_store(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    assert_fails(cli(empty, "runs", "ls", "--json"), f"{empty} is not a Baton store")
    assert empty.stat().st_size == 0


def test_another_programs_database(tmp_path: Path) -> None:
    other = tmp_path / "crm.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    conn.close()
    assert_fails(cli(other, "runs", "ls"), "is not a Baton store", "customers")


def test_another_programs_postgres_schema(pg_url: str) -> None:
    _, schema = pg_target(pg_url)
    query(pg_url, f'CREATE SCHEMA "{schema}"')
    query(pg_url, "CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    assert_fails(cli(pg_url, "runs", "ls"), "is not a Baton store", "customers")
    assert tables(pg_url) == {"customers"}  # left untouched


def test_store_from_a_newer_baton(store: Store) -> None:
    query(store.path, "UPDATE baton_meta SET value='999' WHERE key='schema_version'")
    assert_fails(cli(store.path, "dlq", "ls"), "schema version 999", "upgrade Baton")


def test_directory_is_not_a_store(tmp_path: Path) -> None:
    assert_fails(cli(tmp_path, "runs", "ls"), "it is a directory")


def test_unreachable_postgres_server() -> None:
    """Nothing listens on port 1: a clear error naming the server and why, no traceback."""
    url = "postgresql://postgres@127.0.0.1:1/x"
    result = cli(url, "runs", "ls")
    assert_fails(result, "cannot open store", "127.0.0.1:1")
    assert "refused" in result.stderr.split("127.0.0.1:1", 1)[1].lower(), result.stderr
    assert_fails(cli(url, "dlq", "ls", "--json"), "127.0.0.1:1")


def test_help() -> None:
    result = runner.invoke(cli_app, ["--help"])
    assert result.exit_code == 0
    for text in ("--store", "runs", "dlq", "events"):
        assert text in result.stdout


# -- a real process -------------------------------------------------------------------------------
def test_entry_point_in_a_real_process(store: Store, tmp_path: Path) -> None:
    def baton_cmd(*args: str) -> subprocess.CompletedProcess[str]:
        code = "from baton.cli.main import main; main()"
        return subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
        )

    done = baton_cmd("--store", str(store.path), "runs", "ls", "--json")
    assert done.returncode == 0, done.stderr
    assert {r["run_id"] for r in json.loads(done.stdout)} == {store.ok, store.dead}
    table = baton_cmd("--store", str(store.path), "dlq", "ls")
    assert table.returncode == 0 and store.dead in table.stdout
    missing = baton_cmd("--store", str(tmp_path / "missing.db"), "runs", "ls")
    assert missing.returncode == 1 and missing.stdout == ""
    assert (
        missing.stderr.startswith("error: no Baton store at") and "Traceback" not in missing.stderr
    )
