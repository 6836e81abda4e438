"""The embedded SQLite backend."""

from baton.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
