"""Opening the store named by --store / BATON_STORE, and reporting errors the same way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer

from baton.core.errors import BatonError
from baton.engine.app import App
from baton.store import open_store

OTHER_BACKENDS = ("postgresql://", "postgres://")


def fail(message: str) -> NoReturn:
    """Print `error: message` on stderr and exit 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def sqlite_path(location: str) -> Path | None:
    """The file a location names (a path or `sqlite:///path`), or None for another backend."""
    if location.startswith(OTHER_BACKENDS):
        return None
    if location.startswith("sqlite://"):  # sqlite:///relative.db, sqlite:////absolute.db
        location = location.removeprefix("sqlite://").removeprefix("/")
    return Path(location).expanduser()


@contextmanager
def open_app(location: str) -> Iterator[App]:
    """An App on an existing store, without a worker; Baton errors become `error: ...`.

    The CLI never creates a store: a missing file is an error, not a new empty store.
    """
    path = sqlite_path(location)
    if path is not None:
        if not path.exists():
            fail(f"no Baton store at {path} (set --store or BATON_STORE)")
        if path.is_file() and path.stat().st_size == 0:
            fail(f"{path} is not a Baton store: the file is empty")
    try:
        # a database without a Baton schema is not made into one by a command that only looks
        store = path if path is not None else open_store(location, create=False)
        app = App(store=store, worker=False)
    except BatonError as exc:
        fail(str(exc))
    try:
        yield app
    except BatonError as exc:
        fail(str(exc))
    finally:
        app.shutdown()
