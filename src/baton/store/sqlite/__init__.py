"""The embedded SQLite backend."""

from baton.store.sqlite.backend import SQLiteStore

__all__ = ["SQLiteStore"]
