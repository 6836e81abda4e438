"""The PostgreSQL backend (psycopg 3): install with `pip install 'baton[postgres]'`."""

from baton.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
