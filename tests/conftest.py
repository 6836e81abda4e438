from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import baton

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A PostgreSQL server: BATON_TEST_PG_DSN, else a throw-away one, else the test skips."""
    import pgserver as pg

    dsn = os.environ.get(pg.ENV)
    if dsn:
        problem = pg.reachable(dsn)
        if problem:
            pytest.fail(f"{pg.ENV}={dsn} does not answer: {problem}")
        yield dsn
        return
    try:
        server = pg.ThrowawayPostgres()
    except Exception as exc:
        pytest.skip(f"PostgreSQL tests skipped: no {pg.ENV} and no throw-away server ({exc})")
    try:
        yield server.dsn
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_dsn: str) -> Iterator[str]:
    """A store URL for a fresh schema of its own (dropped after the test)."""
    import pgserver as pg

    url = pg.fresh_schema_url(pg_dsn)
    yield url
    pg.drop_schema(url)


@pytest.fixture(params=BACKENDS)
def store_path(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """The test's store, on each backend: a SQLite file, or a PostgreSQL schema URL."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return tmp_path / "baton.db"


@pytest.fixture
def other_store_path(
    request: pytest.FixtureRequest, store_path: str | Path, tmp_path: Path
) -> Iterator[str | Path]:
    """A second, separate store on the same backend as `store_path`."""
    import pgserver as pg

    if isinstance(store_path, Path):
        yield tmp_path / "other.db"
        return
    url = pg.fresh_schema_url(request.getfixturevalue("pg_dsn"))
    yield url
    pg.drop_schema(url)


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    """A SQLite file, for what only SQLite has (the file itself, its pragmas)."""
    return tmp_path / "baton.db"


@pytest.fixture
def make_app(store_path: str | Path) -> Iterator[Callable[..., baton.App]]:
    """Apps on the test's store, shut down at the end of the test."""
    apps: list[baton.App] = []

    def make(**options: Any) -> baton.App:
        options.setdefault("poll_interval", 0.05)
        app = baton.App(options.pop("store", store_path), **options)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.shutdown(timeout=5)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what or predicate}")
