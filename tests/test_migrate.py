"""`baton store migrate`: a SQLite store with runs in every state, moved to PostgreSQL and
finished there; and the migrations that must be refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

import baton
from baton.cli.main import app as cli_app
from conftest import wait_until

runner = CliRunner()


def build(app: baton.App, calls: Path) -> dict[str, object]:
    def note(name: str) -> None:
        with calls.open("a") as f:
            f.write(f"{name}\n")

    @app.step()
    def first(x: int) -> int:
        note(f"first:{x}")
        return x + 1

    @app.step(retry=baton.Retry(max_attempts=1))
    def fragile(x: int) -> int:
        note(f"fragile:{x}")
        if not (calls.parent / "fixed").exists():
            raise RuntimeError("not yet")
        return x * 10

    @app.workflow()
    def signalled(x: int) -> int:
        y = first(x)
        return y + baton.wait_for_signal("go", timeout=3600)

    @app.workflow()
    def approved(x: int) -> str:
        first(x)
        decision = baton.wait_for_approval("ship", timeout=3600)
        return "shipped" if decision.approved else "held"

    @app.workflow()
    def napping(x: int) -> int:
        y = first(x)
        baton.sleep(1.0)
        return y

    @app.workflow()
    def failing(x: int) -> int:
        return fragile(first(x))

    @app.workflow()
    def plain(x: int) -> int:
        return first(first(x))

    return {
        "signalled": signalled,
        "approved": approved,
        "napping": napping,
        "failing": failing,
        "plain": plain,
    }


def test_runs_in_every_state_move_to_postgres_and_finish_there(
    tmp_path: Path, sqlite_path: Path, pg_url: str
) -> None:
    calls = tmp_path / "calls.log"
    src = baton.App(sqlite_path, poll_interval=0.05, queues=["default"])
    wf = build(src, calls)
    done = src.run(wf["plain"], 1)
    sig = src.start(wf["signalled"], 2)
    appr = src.start(wf["approved"], 3)
    nap = src.start(wf["napping"], 4)
    dead = src.start(wf["failing"], 5)
    queued = src.start(wf["plain"], 60, queue="later")  # nobody here serves "later"
    cut = src.start(wf["napping"], 7)
    wait_until(lambda: sig.status() == "WAITING", what="signal wait")
    wait_until(lambda: appr.status() == "WAITING", what="approval wait")
    wait_until(lambda: nap.status() == "WAITING", what="sleep")
    wait_until(lambda: cut.status() == "WAITING", what="sleep")
    wait_until(lambda: dead.status() == "DEAD", what="dead letter")
    src.shutdown()
    # a run in flight when its worker died: step 1 checkpointed, still owned by the dead
    conn = sqlite3.connect(sqlite_path)
    conn.execute(
        "UPDATE runs SET status='RUNNING', owner='ghost:1', fence=fence+1 WHERE run_id=?",
        (cut.id,),
    )
    conn.commit()
    events_before = conn.execute("SELECT COUNT(*), MAX(seq) FROM events").fetchone()
    conn.close()
    assert done == 3

    result = runner.invoke(
        cli_app,
        ["store", "migrate", "--from", f"sqlite:///{sqlite_path}", "--to", pg_url, "--json"],
    )
    assert result.exit_code == 0, result.output
    report = baton.core.serialization.loads(result.stdout)
    assert report["rows"]["runs"] == 7
    assert report["rows"]["events"] == events_before[0]
    assert report["leases_reset"] == 1

    calls.write_text("")  # from here on, count what runs on PostgreSQL
    (tmp_path / "fixed").touch()
    dst = baton.App(pg_url, poll_interval=0.05, queues=["default", "later"])
    try:
        build(dst, calls)
        assert [r.status for r in dst.runs(workflow="plain", status="SUCCEEDED")] == ["SUCCEEDED"]
        dst.signal(sig.id, "go", 100)
        dst.approve(appr.id, "ship", by="ops")
        dst.redrive(dead.id)
        results = {
            h: dst.handle(h).result(timeout=30)
            for h in (sig.id, appr.id, nap.id, dead.id, queued.id, cut.id)
        }
        assert results == {
            sig.id: 103,
            appr.id: "shipped",
            nap.id: 5,
            dead.id: 60,
            queued.id: 62,
            cut.id: 8,
        }
        ran = calls.read_text().split()
        # checkpoints moved with their runs: no finished step ran again on PostgreSQL
        assert "first:2" not in ran and "first:3" not in ran and "first:4" not in ran
        assert "first:7" not in ran  # the in-flight run resumed after its checkpoint
        assert ran.count("fragile:6") == 1 and "first:5" not in ran
        events = dst.events(limit=10_000)
        assert len({e.seq for e in events}) == len(events)
        assert max(e.seq for e in events) > events_before[1]  # the log goes on after the copy
    finally:
        dst.shutdown()


def test_migrating_into_a_non_empty_store_is_refused(sqlite_path: Path, pg_url: str) -> None:
    for location in (sqlite_path, pg_url):
        app = baton.App(location, poll_interval=0.05)

        @app.workflow()
        def hello() -> str:
            return "hi"

        app.run(hello)
        app.shutdown()
    result = runner.invoke(
        cli_app, ["store", "migrate", "--from", str(sqlite_path), "--to", pg_url]
    )
    assert result.exit_code == 1
    assert "is not empty (1 runs" in result.output
    assert "Traceback" not in result.output
    check = baton.App(pg_url, worker=False)
    try:
        assert len(check.runs()) == 1  # nothing was added
    finally:
        check.shutdown()


def test_migrating_while_workers_heartbeat_is_refused(sqlite_path: Path, pg_url: str) -> None:
    app = baton.App(sqlite_path, poll_interval=0.05)

    @app.workflow()
    def hello() -> str:
        return "hi"

    app.run(hello)  # its worker is running and heartbeating
    try:
        result = runner.invoke(
            cli_app, ["store", "migrate", "--from", str(sqlite_path), "--to", pg_url]
        )
        assert result.exit_code == 1
        assert "still heartbeat" in result.output and "--force" in result.output
    finally:
        app.shutdown()


@pytest.mark.parametrize(
    "target, words",
    [
        ("postgresql://postgres@127.0.0.1:1/test", ["127.0.0.1:1"]),
        ("postgresql://postgres@127.0.0.1:5432/test?schema=bad-name", ["schema"]),
    ],
)
def test_bad_targets_give_clear_errors(sqlite_path: Path, target: str, words: list[str]) -> None:
    baton.App(sqlite_path, worker=False).shutdown()
    result = runner.invoke(
        cli_app, ["store", "migrate", "--from", str(sqlite_path), "--to", target]
    )
    assert result.exit_code == 1
    assert all(w in result.output for w in words), result.output
    assert "Traceback" not in result.output
