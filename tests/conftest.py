from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import baton


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "baton.db"


@pytest.fixture
def make_app(store_path: Path) -> Iterator[Callable[..., baton.App]]:
    """Apps on the test's SQLite file, shut down at the end of the test."""
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
