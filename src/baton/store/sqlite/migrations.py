"""Numbered schema migrations. Never edit a released step: append a new one."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: runs (the queue), step checkpoints, the event log, worker liveness
    """
    CREATE TABLE runs (
        run_id            TEXT PRIMARY KEY,
        workflow          TEXT NOT NULL,
        version           TEXT NOT NULL,
        status            TEXT NOT NULL,
        queue             TEXT NOT NULL,
        priority          INTEGER NOT NULL DEFAULT 0,
        available_at      REAL NOT NULL,
        owner             TEXT,
        fence             INTEGER NOT NULL DEFAULT 0,
        lease_expires_at  REAL,
        attempt           INTEGER NOT NULL DEFAULT 0,
        deadline_at       REAL,
        timeout           REAL,
        parent_run_id     TEXT,
        idempotency_key   TEXT UNIQUE,
        correlation_id    TEXT NOT NULL,
        input             TEXT NOT NULL,
        output            TEXT,
        error             TEXT,
        created_at        REAL NOT NULL,
        updated_at        REAL NOT NULL,
        started_at        REAL,
        finished_at       REAL
    );
    CREATE INDEX runs_claim ON runs (queue, priority DESC, available_at)
        WHERE status = 'ENQUEUED';
    CREATE INDEX runs_due ON runs (available_at) WHERE status = 'ENQUEUED';
    CREATE INDEX runs_status ON runs (status, workflow);
    CREATE INDEX runs_owner ON runs (owner) WHERE status = 'RUNNING';
    CREATE INDEX runs_deadline ON runs (deadline_at) WHERE deadline_at IS NOT NULL;

    CREATE TABLE steps (
        run_id       TEXT NOT NULL,
        seq          INTEGER NOT NULL,
        name         TEXT NOT NULL,
        args_hash    TEXT NOT NULL,
        status       TEXT NOT NULL,
        attempts     INTEGER NOT NULL,
        started_at   REAL NOT NULL,
        finished_at  REAL,
        output       TEXT,
        error        TEXT,
        written_by   TEXT,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;

    CREATE TABLE events (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        id              TEXT NOT NULL UNIQUE,
        type            TEXT NOT NULL,
        source          TEXT NOT NULL,
        subject         TEXT,
        time            REAL NOT NULL,
        correlation_id  TEXT,
        run_id          TEXT,
        data            TEXT
    );
    CREATE INDEX events_run ON events (run_id, seq);
    CREATE INDEX events_type ON events (type, seq);
    CREATE INDEX events_correlation ON events (correlation_id, seq);

    CREATE TABLE workers (
        worker_id           TEXT PRIMARY KEY,
        host                TEXT NOT NULL,
        pid                 INTEGER NOT NULL,
        process_started_at  REAL NOT NULL,
        started_at          REAL NOT NULL,
        heartbeat_at        REAL NOT NULL,
        versions            TEXT NOT NULL DEFAULT '[]'
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
