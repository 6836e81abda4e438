"""Numbered schema migrations. Never edit a released step: append a new one."""

from __future__ import annotations

# the first line of a migration that only SQLite applies (PostgreSQL counts it, doing nothing)
SQLITE_ONLY = "-- sqlite only"

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
    # 2: waiting (sleep, signals, approvals, children), sagas, flow control, schedules,
    #    large payloads. Runs ready to claim are unowned ENQUEUED, WAITING or COMPENSATING rows
    #    whose available_at has come; a run waiting without a timer has available_at = NEVER.
    """
    ALTER TABLE runs ADD COLUMN wakeups INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN concurrency_key TEXT;
    ALTER TABLE runs ADD COLUMN key_limit INTEGER;
    ALTER TABLE runs ADD COLUMN debounce_key TEXT;
    ALTER TABLE runs ADD COLUMN schedule TEXT;
    ALTER TABLE runs ADD COLUMN forked_from TEXT;
    DROP INDEX runs_claim;
    DROP INDEX runs_due;
    CREATE INDEX runs_ready ON runs (available_at)
        WHERE owner IS NULL AND status IN ('ENQUEUED', 'WAITING', 'COMPENSATING');
    CREATE INDEX runs_active_queue ON runs (queue) WHERE status IN ('RUNNING', 'COMPENSATING');
    CREATE INDEX runs_active_key ON runs (concurrency_key)
        WHERE concurrency_key IS NOT NULL AND status IN ('RUNNING', 'COMPENSATING');
    CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
    CREATE INDEX runs_debounce ON runs (debounce_key)
        WHERE debounce_key IS NOT NULL AND status = 'ENQUEUED';
    CREATE INDEX runs_schedule ON runs (schedule, status) WHERE schedule IS NOT NULL;

    ALTER TABLE steps ADD COLUMN kind TEXT NOT NULL DEFAULT 'step';
    ALTER TABLE steps ADD COLUMN input TEXT;

    CREATE TABLE signals (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        id            TEXT NOT NULL UNIQUE,
        run_id        TEXT NOT NULL,
        name          TEXT NOT NULL,
        payload       TEXT,
        sent_at       REAL NOT NULL,
        consumed_seq  INTEGER,
        consumed_at   REAL
    );
    CREATE INDEX signals_pending ON signals (run_id, name, seq) WHERE consumed_seq IS NULL;

    CREATE TABLE approvals (
        run_id        TEXT NOT NULL,
        seq           INTEGER NOT NULL,
        name          TEXT NOT NULL,
        workflow      TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        assignees     TEXT NOT NULL DEFAULT '[]',
        requested_at  REAL NOT NULL,
        deadline_at   REAL,
        on_timeout    TEXT NOT NULL,
        status        TEXT NOT NULL,
        decided_by    TEXT,
        comment       TEXT,
        decided_at    REAL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    CREATE INDEX approvals_pending ON approvals (requested_at) WHERE status = 'PENDING';

    CREATE TABLE queues (
        name             TEXT PRIMARY KEY,
        concurrency      INTEGER,
        key_concurrency  INTEGER,
        rate_limit       INTEGER,
        rate_period      REAL,
        updated_at       REAL NOT NULL
    );
    CREATE TABLE queue_starts (
        queue  TEXT NOT NULL,
        at     REAL NOT NULL
    );
    CREATE INDEX queue_starts_window ON queue_starts (queue, at);

    CREATE TABLE schedules (
        name          TEXT PRIMARY KEY,
        workflow      TEXT NOT NULL,
        version       TEXT NOT NULL,
        kind          TEXT NOT NULL,
        spec          TEXT NOT NULL,
        timezone      TEXT NOT NULL DEFAULT 'UTC',
        input         TEXT NOT NULL,
        queue         TEXT NOT NULL DEFAULT 'default',
        priority      INTEGER NOT NULL DEFAULT 0,
        overlap       TEXT NOT NULL DEFAULT 'skip',
        catchup       REAL NOT NULL DEFAULT 0,
        paused        INTEGER NOT NULL DEFAULT 0,
        next_fire_at  REAL,
        last_fire_at  REAL,
        created_at    REAL NOT NULL,
        updated_at    REAL NOT NULL
    );

    CREATE TABLE payloads (
        hash        TEXT PRIMARY KEY,
        data        TEXT NOT NULL,
        size        INTEGER NOT NULL,
        created_at  REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 3: the control plane: a run's trace context, outbound webhook subscriptions and their
    #    durable deliveries, read positions in the event log, and feature flags
    """
    ALTER TABLE runs ADD COLUMN traceparent TEXT;
    CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

    CREATE TABLE webhook_subscriptions (
        id           TEXT PRIMARY KEY,
        url          TEXT NOT NULL,
        event_types  TEXT NOT NULL DEFAULT '["*"]',
        secret       TEXT NOT NULL,
        description  TEXT,
        active       INTEGER NOT NULL DEFAULT 1,
        created_at   REAL NOT NULL,
        updated_at   REAL NOT NULL
    );

    CREATE TABLE webhook_deliveries (
        id               TEXT PRIMARY KEY,
        subscription_id  TEXT NOT NULL,
        event_seq        INTEGER NOT NULL,
        event_id         TEXT NOT NULL,
        event_type       TEXT NOT NULL,
        status           TEXT NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        available_at     REAL NOT NULL,
        owner            TEXT,
        lease_expires_at REAL,
        last_status      INTEGER,
        last_error       TEXT,
        created_at       REAL NOT NULL,
        updated_at       REAL NOT NULL,
        delivered_at     REAL,
        UNIQUE (subscription_id, event_id)
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (available_at)
        WHERE status = 'PENDING';
    CREATE INDEX webhook_deliveries_status ON webhook_deliveries (status, created_at);

    CREATE TABLE cursors (
        name        TEXT PRIMARY KEY,
        seq         INTEGER NOT NULL,
        updated_at  REAL NOT NULL
    );

    CREATE TABLE flags (
        name        TEXT PRIMARY KEY,
        value       TEXT NOT NULL,
        updated_at  REAL NOT NULL,
        updated_by  TEXT
    );
    """,
    # 4: fewer index pages written by every commit of a run: the few active runs are found
    #    through runs_status (status first), by owner and by queue alike; an event correlated
    #    by its own run's id (the default) is found through events_run
    """
    DROP INDEX runs_owner;
    DROP INDEX runs_active_queue;
    DROP INDEX events_correlation;
    CREATE INDEX events_correlation ON events (correlation_id, seq)
        WHERE correlation_id IS NOT NULL AND (run_id IS NULL OR correlation_id != run_id);
    """,
    # 5: the types every run logs (enqueued, started, a completed step, succeeded) leave the
    #    type index, which took one page per type for every commit; a query for them reads
    #    the log in seq order, where they are dense (store/sql/base.py: ROUTINE_TYPES)
    """
    DROP INDEX events_type;
    CREATE INDEX events_type ON events (type, seq)
        WHERE type NOT IN ('baton.run.enqueued', 'baton.run.started', 'baton.step.completed',
                           'baton.run.succeeded');
    """,
    # 6: events.seq without AUTOINCREMENT, whose counter page (sqlite_sequence) every commit
    #    that logs an event wrote; seq is the rowid, max + 1, and still never reused, since
    #    nothing deletes events. PostgreSQL's identity column has no such page: not there.
    f"""
    {SQLITE_ONLY}
    CREATE TABLE events_next (
        seq             INTEGER PRIMARY KEY,
        id              TEXT NOT NULL UNIQUE,
        type            TEXT NOT NULL,
        source          TEXT NOT NULL,
        subject         TEXT,
        time            REAL NOT NULL,
        correlation_id  TEXT,
        run_id          TEXT,
        data            TEXT
    );
    INSERT INTO events_next (seq, id, type, source, subject, time, correlation_id, run_id, data)
        SELECT seq, id, type, source, subject, time, correlation_id, run_id, data FROM events;
    DROP TABLE events;
    ALTER TABLE events_next RENAME TO events;
    CREATE INDEX events_run ON events (run_id, seq);
    CREATE INDEX events_type ON events (type, seq)
        WHERE type NOT IN ('baton.run.enqueued', 'baton.run.started', 'baton.step.completed',
                           'baton.run.succeeded');
    CREATE INDEX events_correlation ON events (correlation_id, seq)
        WHERE correlation_id IS NOT NULL AND (run_id IS NULL OR correlation_id != run_id);
    DELETE FROM sqlite_sequence WHERE name = 'events';
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
