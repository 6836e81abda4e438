"""Worker processes, a store reader and a TCP proxy for the fault tests on PostgreSQL."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

WORKER = Path(__file__).resolve().parent / "worker.py"


def plan(*steps: tuple[float, ...]) -> list[list[float]]:
    """The `plan` argument of `three`: per step, [low_ms, high_ms] of its sleep, and 1 if it
    then waits for its process's gate (see `Worker.open_gate`)."""
    return [list(s) for s in steps]


def expected_value(job: int) -> int:
    return (job + 1) * 2 + 3


# -- worker processes -------------------------------------------------------------------------
class Worker:
    """One `worker.py` process; its stderr goes to `logdir/stderr-<pid>`."""

    def __init__(self, url: str, logdir: Path, *options: str) -> None:
        self.logdir = logdir
        err = (logdir / "stderr").open("a")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(WORKER), url, str(logdir), *options],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        finally:
            err.close()
        self.pid = self.proc.pid
        self.worker_id: str | None = None
        self.killed = False

    def ready(self, timeout: float = 60.0) -> str:
        """Wait for `ready <worker_id>`; return the worker id."""
        if self.worker_id is not None:
            return self.worker_id
        line = self._line(timeout)
        if not line.startswith("ready "):
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"worker {self.pid} did not get ready (said {line!r}); stderr:\n"
                f"{stderr_tail(self.logdir)}"
            )
        self.worker_id = line.split()[1]
        return self.worker_id

    def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not readable:
            return f"(nothing within {timeout}s)"
        return self.proc.stdout.readline().strip()

    def open_gate(self) -> None:
        """Let this process's gated steps go on."""
        (self.logdir / f"open-{self.pid}").touch()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)  # not reaped yet: the pid is still this process
        self.proc.wait()
        self.killed = True

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self, timeout: float = 30.0) -> int:
        """Close stdin (a graceful shutdown); return the exit code."""
        assert self.proc.stdin is not None
        with suppress(BrokenPipeError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"worker {self.pid} did not shut down within {timeout}s; stderr:\n"
                f"{stderr_tail(self.logdir)}"
            ) from None
        return self.proc.returncode

    def reap(self) -> None:
        """Make sure the process is gone (test teardown)."""
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with suppress(OSError):
                    stream.close()


def dump_stacks(workers: list[Worker], logdir: Path, lines: int = 400) -> str:
    """Have the live workers print their threads' stacks, one after another; return the
    stderr tail."""
    for worker in workers:
        if worker.alive():
            with suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGUSR1)
            time.sleep(0.5)
    return stderr_tail(logdir, lines)


def stderr_tail(logdir: Path, lines: int = 40) -> str:
    path = logdir / "stderr"
    if not path.exists():
        return "(none)"
    return "\n".join(path.read_text().splitlines()[-lines:])


# -- the processes' logs ----------------------------------------------------------------------
@dataclass
class Effects:
    """What the worker processes logged (see worker.py)."""

    execs: dict[tuple[str, int], list[int]] = field(default_factory=dict)  # (run, seq) -> pids
    lines: list[tuple[str, ...]] = field(default_factory=list)

    def of(self, kind: str, pid: int | None = None) -> list[tuple[str, ...]]:
        return [ln for ln in self.lines if ln[0] == kind and (pid is None or int(ln[1]) == pid)]


def read_effects(logdir: Path) -> Effects:
    effects = Effects()
    execs: dict[tuple[str, int], list[tuple[float, int]]] = {}
    for path in sorted(logdir.glob("*.log")):
        for raw in path.read_text().splitlines():
            fields = tuple(raw.split())
            effects.lines.append(fields)
            if fields[0] == "exec":
                _, pid, run_id, seq, _fence = fields
                execs.setdefault((run_id, int(seq)), []).append((int(_fence), int(pid)))
    # in claim order: a later claim has a higher fence
    effects.execs = {key: [pid for _, pid in sorted(v)] for key, v in execs.items()}
    return effects


# -- the store, read with plain psycopg -------------------------------------------------------
def split_url(url: str) -> tuple[str, str]:
    """(libpq DSN, schema) of a `...?schema=NAME` store URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = dict(query)["schema"]
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, "")), schema


def with_params(url: str, **params: Any) -> str:
    """`url` with more query parameters."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query) + [(k, str(v)) for k, v in params.items()]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def via(url: str, port: int) -> str:
    """`url` pointed at 127.0.0.1:`port` (a proxy) instead of its server."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    netloc = f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


class Db:
    """Autocommit reads (and the odd query) on a store's schema."""

    def __init__(self, url: str) -> None:
        dsn, schema = split_url(url)
        self.dsn, self.schema = dsn, schema
        self._conn: psycopg.Connection | None = None

    def _connect(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=5,
                options=f"-c search_path={self.schema}",
            )
        return self._conn

    def rows(self, sql: str, params: tuple = (), patience: float = 30.0) -> list[tuple]:
        """The query's rows; while the server is away (restarting), try again for up to
        `patience` seconds."""
        deadline = time.monotonic() + patience
        while True:
            try:
                cur = self._connect().execute(sql, params)
                return cur.fetchall() if cur.description is not None else []
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                if self._conn is not None:
                    self._conn.close()
                time.sleep(0.2)

    def statuses(self) -> dict[str, int]:
        try:
            return dict(self.rows("SELECT status, COUNT(*) FROM runs GROUP BY status"))
        except psycopg.errors.UndefinedTable:
            return {}

    def unfinished(self) -> int:
        counts = self.statuses()
        return sum(n for s, n in counts.items() if s not in ("SUCCEEDED", "FAILED", "DEAD"))

    def stuck(self, limit: int = 10) -> str:
        """The unfinished runs, with their owner, fence and events (for failure messages)."""
        lines = []
        for run_id, status, owner, fence, updated_at in self.rows(
            "SELECT run_id, status, owner, fence, updated_at FROM runs "
            "WHERE status NOT IN ('SUCCEEDED', 'FAILED', 'DEAD') ORDER BY run_id LIMIT %s",
            (limit,),
        ):
            registered = bool(self.rows("SELECT 1 FROM workers WHERE worker_id = %s", (owner,)))
            events = self.rows(
                "SELECT type, source, time, data FROM events WHERE run_id = %s ORDER BY seq",
                (run_id,),
            )
            lines.append(
                f"{run_id} {status} owner={owner} (registered: {registered}) fence={fence} "
                f"updated_at={updated_at!r}; events: {events}"
            )
        return "\n".join(lines)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


def wait_for_runs(
    db: Db, workers: list[Worker], logdir: Path, timeout: float, what: str = "every run to end"
) -> None:
    """Wait until no run is unfinished; else fail with the stuck runs and the workers' stacks."""
    try:
        wait_until(lambda: db.unfinished() == 0, timeout, what)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}: {db.statuses()}\n{db.stuck()}\n{dump_stacks(workers, logdir)}"
        ) from None


# -- a TCP proxy that can cut the line ---------------------------------------------------------
class Proxy:
    """A loopback TCP proxy to `upstream`. `cut()` stops forwarding in both directions without
    closing anything (bytes already read are held, nothing more is read: a network partition
    as the two ends see it); `heal()` forwards again, held bytes first. `cut_after(pattern)`
    cuts as soon as a client has sent bytes containing `pattern` (once they are forwarded)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._open = threading.Event()
        self._open.set()
        self._closed = False
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._upstreams: list[socket.socket] = []
        self._lock = threading.Lock()
        self._trigger: bytes | None = None
        self.connections = 0
        self._threads = [threading.Thread(target=self._accept, daemon=True, name="proxy-accept")]
        self._threads[0].start()

    def cut(self) -> None:
        self._open.clear()

    def cut_after(self, pattern: bytes) -> None:
        with self._lock:
            self._trigger = pattern

    def is_cut(self) -> bool:
        return not self._open.is_set()

    def heal(self) -> None:
        with self._lock:
            self._trigger = None
        self._open.set()

    def server_side_ports(self) -> list[int]:
        """The local ports of the proxy's connections to the server (`client_port` there)."""
        ports = []
        with self._lock:
            for sock in self._upstreams:
                with suppress(OSError):
                    ports.append(sock.getsockname()[1])
        return ports

    def close(self) -> None:
        self._closed = True
        self._open.set()
        for thread in self._threads:
            thread.join(timeout=2)
        with self._lock:
            for sock in self._sockets:
                with suppress(OSError):
                    sock.close()
        self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
                self._upstreams.append(upstream)
                self.connections += 1
            for src, dst, outbound in ((client, upstream, True), (upstream, client, False)):
                thread = threading.Thread(
                    target=self._pump, args=(src, dst, outbound), daemon=True, name="proxy-pump"
                )
                self._threads.append(thread)
                thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket, outbound: bool) -> None:
        try:
            while not self._closed:
                self._open.wait()
                readable, _, _ = select.select([src], [], [], 0.1)
                if not readable:
                    continue
                data = src.recv(65536)
                if not data:
                    break
                while not self._open.wait(0.1):  # cut meanwhile: hold the bytes
                    if self._closed:
                        return
                dst.sendall(data)
                if outbound and self._trigger is not None:
                    with self._lock:
                        if self._trigger is not None and self._trigger in data:
                            self._trigger = None
                            self._open.clear()
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def submitter(url: str, **options: Any) -> Any:
    """An App that only starts runs of `three` (its workers are the worker processes)."""
    import baton

    app = baton.App(url, worker=False, **options)

    @app.workflow(name="three")
    def three(job: int, plan: list[list[float]]) -> dict:  # executed by worker.py only
        raise NotImplementedError

    return app
