"""What only the PostgreSQL backend has: URLs, connection errors, the leader's lock, and
LISTEN/NOTIFY wake-ups. Everything else runs on both backends in the other suites."""

from __future__ import annotations

import threading

import pytest

import baton
from baton.core.errors import StoreUnavailable
from baton.store import RunRecord, RunStatus, open_store
from baton.store.postgres import PostgresStore
from conftest import wait_until


def _run(run_id: str) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        workflow="wf",
        version="1",
        status=RunStatus.ENQUEUED,
        queue="default",
        priority=0,
        available_at=0.0,
        correlation_id=run_id,
        input="{}",
        created_at=0.0,
        updated_at=0.0,
    )


def test_an_unreachable_server_names_host_and_reason_and_hides_the_password() -> None:
    with pytest.raises(StoreUnavailable) as info:
        baton.App("postgresql://app:s3cret@127.0.0.1:1/orders?connect_timeout=2")
    text = str(info.value)
    assert "127.0.0.1:1" in text
    assert "refused" in text.lower() or "connect" in text.lower()
    assert "s3cret" not in text and "***" in text


@pytest.mark.parametrize(
    "option, words",
    [
        ("pool_size=zero", "pool_size must be an integer"),
        ("pool_size=0", "pool_size must be >= 1"),
        ("writers=1", "writers must be >= 2"),
        ("schema=bad;name", "schema must be a plain SQL identifier"),
    ],
)
def test_bad_url_options_are_refused_before_connecting(option: str, words: str) -> None:
    with pytest.raises(StoreUnavailable, match=words):
        PostgresStore(f"postgresql://postgres@127.0.0.1:1/x?{option}")


def test_sqlite_only_options_are_refused(pg_url: str) -> None:
    with pytest.raises(ValueError, match="SQLite stores only"):
        baton.App(pg_url, synchronous="NORMAL")


def test_one_leader_at_a_time_and_another_takes_over(pg_url: str) -> None:
    first, second = open_store(pg_url), open_store(pg_url)
    try:
        assert first.try_lead() is True
        assert second.try_lead() is False
        assert first.try_lead() is True  # still held
        first.close()  # its session ends: the lock is free
        assert wait_until(second.try_lead, timeout=10, what="the second store to lead")
    finally:
        first.close()
        second.close()


def test_a_run_created_elsewhere_is_announced(pg_url: str) -> None:
    listener, writer = open_store(pg_url), open_store(pg_url)
    heard = threading.Event()
    unsubscribe = listener.subscribe(heard.set)
    try:
        wait_until(heard.is_set, what="the first hint after listening")
        heard.clear()
        writer.create_run(_run("r1"), []).result()
        assert heard.wait(10), "no NOTIFY for a new run"
    finally:
        unsubscribe()
        listener.close()
        writer.close()


def test_a_worker_elsewhere_starts_a_run_without_waiting_for_its_poll(pg_url: str) -> None:
    # the worker polls only every 30 s: the run can only start quickly through NOTIFY
    worker = baton.App(pg_url, poll_interval=30.0)
    submitter = baton.App(pg_url, worker=False)
    try:

        @worker.workflow()
        def hello() -> str:
            return "hi"

        submitter.registry = worker.registry  # same definitions, no worker of its own
        worker.launch()
        wait_until(lambda: worker.store.list_workers(), what="the worker to register")
        handle = submitter.start("hello")
        assert handle.result(timeout=15) == "hi"
    finally:
        submitter.shutdown()
        worker.shutdown()


def test_the_cli_does_not_make_a_store_where_there_is_none(pg_url: str) -> None:
    from typer.testing import CliRunner

    from baton.cli.main import app as cli_app

    result = CliRunner().invoke(cli_app, ["--store", pg_url, "runs", "ls"])
    assert result.exit_code == 1
    assert "no Baton store here" in result.output and "Traceback" not in result.output
    schema = pg_url.rsplit("schema=", 1)[1]
    dsn = pg_url.split("?", 1)[0]
    import psycopg

    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchone()
    assert found == (0,)


def test_payload_threshold_is_checked_as_on_sqlite(pg_url: str) -> None:
    for bad in (-1, 1.5, "64k"):
        with pytest.raises(ValueError, match="payload_threshold must be an int >= 0"):
            baton.App(pg_url, payload_threshold=bad)
