from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import Worker


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """Every worker process a test starts (append them here): killed at the end whatever
    happened."""
    procs: list[Worker] = []
    yield procs
    for worker in procs:
        worker.reap()
