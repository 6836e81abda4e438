"""Writes that committed although the store reported them failed (a connection lost during
COMMIT, as when PostgreSQL restarts), and a read that fails right after a claim: the runs
they concern must still end, not stay RUNNING under a live worker that never executes them.

The store's answer is forged in-process (test instrumentation): the real write commits, then
the caller is told it failed, as it is when the connection drops before the commit's reply.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

import baton
from baton.core.errors import StoreUnavailable

pytestmark = pytest.mark.crash


def make_app(url: str, **options: Any) -> baton.App:
    app = baton.App(url, poll_interval=0.05, heartbeat_interval=0.1, **options)

    @app.step(name="double")
    def double(x: int) -> int:
        return 2 * x

    @app.workflow(name="twice")
    def twice(x: int) -> int:
        return double(x)

    return app


@pytest.fixture
def apps(pg_url: str) -> Iterator[Callable[..., baton.App]]:
    made: list[baton.App] = []

    def make(**options: Any) -> baton.App:
        made.append(make_app(pg_url, **options))
        return made[-1]

    yield make
    for app in made:
        app.shutdown(timeout=5)


def lie_once(store: Any, name: str, when: Callable[[Any], bool]) -> list[Any]:
    """Make `store.<name>` commit, then report a lost connection, the first time its result
    satisfies `when`. Returns the list the forged results go to."""
    real = getattr(store, name)
    forged: list[Any] = []

    def wrapped(*args: Any, **kwargs: Any) -> Future:
        fut = real(*args, **kwargs)
        if forged:
            return fut
        try:
            value = fut.result()
        except Exception:
            return fut
        if not when(value):
            return fut
        forged.append(value)
        failed: Future = Future()
        failed.set_exception(StoreUnavailable(store.location, "connection lost during COMMIT"))
        return failed

    setattr(store, name, wrapped)
    return forged


@pytest.mark.timeout(60)
def test_claim_that_committed_but_failed(apps: Callable[..., baton.App]) -> None:
    client = apps(worker=False)
    handle = client.start("twice", 21)
    worker = apps()
    forged = lie_once(worker.store, "claim_runs", lambda runs: len(runs) > 0)
    worker.launch()
    assert handle.result(timeout=30) == 42
    assert forged and [r.run_id for r in forged[0]] == [handle.id]
    started = client.events(run_id=handle.id, type="baton.run.started")
    assert len(started) == 2, "claimed in doubt, handed back, claimed again"
    assert len(client.events(run_id=handle.id, type="baton.run.recovered")) == 1


@pytest.mark.timeout(60)
def test_start_that_claimed_and_committed_but_failed(apps: Callable[..., baton.App]) -> None:
    app = apps()
    app.launch()
    forged = lie_once(app.store, "create_run", lambda result: result[1])
    with pytest.raises(StoreUnavailable):
        app.start("twice", 21, idempotency_key="order-1")
    assert forged and forged[0][0].status == "RUNNING", "the start claimed its run"
    handle = app.start("twice", 21, idempotency_key="order-1")  # the documented retry
    assert not handle.created and handle.id == forged[0][0].run_id
    assert handle.result(timeout=30) == 42


@pytest.mark.timeout(60)
def test_claimed_run_whose_checkpoints_cannot_be_read(apps: Callable[..., baton.App]) -> None:
    client = apps(worker=False)
    handles = [client.start("twice", i) for i in range(3)]
    worker = apps()
    real = worker.store.load_steps
    failed: list[str] = []

    def load_steps(run_id: str) -> Any:
        if not failed:
            failed.append(run_id)
            raise StoreUnavailable(worker.store.location, "server closed the connection")
        return real(run_id)

    worker.store.load_steps = load_steps  # type: ignore[method-assign]
    worker.launch()
    assert [h.result(timeout=30) for h in handles] == [0, 2, 4]
    assert failed
