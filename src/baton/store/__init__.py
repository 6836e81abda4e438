"""Durable storage: the Store protocol and its backends."""

from __future__ import annotations

import os
from pathlib import Path

from baton.store.protocol import Store
from baton.store.records import (
    REDRIVABLE,
    TERMINAL,
    EventRecord,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
    WorkerRecord,
)

DEFAULT_LOCATION = ".baton/baton.db"

__all__ = [
    "DEFAULT_LOCATION",
    "REDRIVABLE",
    "TERMINAL",
    "EventRecord",
    "RunRecord",
    "RunStatus",
    "StepRecord",
    "StepStatus",
    "Store",
    "WorkerRecord",
    "open_store",
]


def open_store(location: str | os.PathLike[str] | Store | None = None, **options: object) -> Store:
    """Open a store from a URL (`sqlite:///path`), a file path, or return a Store as is.

    With no location, BATON_STORE is used, else `./.baton/baton.db`.
    """
    if location is not None and not isinstance(location, str | os.PathLike):
        return location
    text = os.fspath(location) if location is not None else None
    text = text or os.environ.get("BATON_STORE") or DEFAULT_LOCATION
    if text.startswith(("postgresql://", "postgres://")):
        try:
            from baton.store.postgres import PostgresStore
        except ImportError:
            from baton.core.errors import StoreUnavailable

            shown = text.split("@")[-1]
            raise StoreUnavailable(
                shown, "PostgreSQL needs psycopg: pip install 'baton[postgres]'"
            ) from None
        if "synchronous" in options:
            raise ValueError("synchronous= applies to SQLite stores only")
        return PostgresStore(text, **options)  # type: ignore[arg-type]
    if text.startswith("sqlite://"):
        # sqlite:///relative.db and sqlite:////absolute.db, as SQLAlchemy spells them
        text = text.removeprefix("sqlite://").removeprefix("/")
    from baton.store.sqlite import SQLiteStore

    return SQLiteStore(Path(text), **options)  # type: ignore[arg-type]
