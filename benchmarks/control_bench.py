"""Baton benchmark: the control plane over loopback, on the embedded SQLite store.

The server is a separate process: uvicorn (uvloop, httptools) serving `create_api(App(...))`
with a one-step workflow registered and the App's worker running in that process. The clients
run here, in one asyncio loop, on plain HTTP/1.1 keep-alive connections (a minimal client, so
that the client's own cost stays small next to the server's) and `websockets`.

1. Run submissions: N `POST /api/v1/runs` with C requests in flight; each is answered after
   its commit. Figure: runs accepted per second (first request sent to last answer), and the
   latency of each request. Bar: 1,000 runs/s. The runs execute meanwhile (same process).
2. Batched event ingest: `POST /api/v1/events` with batches of B events, C batches in
   flight. Figure: events per second. Bar: 20,000 events/s.
3. WebSocket fan-out: S subscribers on `/api/v1/events?type=bench.tick`; the publisher
   ingests E events in small batches, each event's `data.sent_at` its wall clock (same host).
   Figure: per-delivery latency, receive time minus `sent_at`: p50/p95/p99. No bar.

Usage::

    .venv/bin/python benchmarks/control_bench.py [--runs 3000] [--concurrency 64] \\
        [--batches 200] [--batch 500] [--ingest-concurrency 4] \\
        [--subscribers 100] [--events 200] [--workdir benchmarks/.work]

Prints one JSON object on one line to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
RUNS_BAR = 1000.0  # runs accepted per second, at least
INGEST_BAR = 20_000.0  # events ingested per second, at least


def progress(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


# -- the server (its own process) ------------------------------------------------------------


def serve(db: Path, port: int, loop: str, http: str) -> None:
    import uvicorn

    import baton
    from baton.server.api import create_api

    app = baton.App(db)

    @app.step(name="touch")
    def touch(x: Any) -> Any:
        return x

    @app.workflow(name="noop")
    def noop(x: Any) -> Any:
        return touch(x)

    app.launch()
    try:
        uvicorn.run(
            create_api(app),
            host="127.0.0.1",
            port=port,
            loop=loop,
            http=http,
            ws="websockets-sansio",
            log_level="warning",
            access_log=False,
        )
    finally:
        app.shutdown(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: Path, loop: str, http: str) -> tuple[subprocess.Popen[bytes], int]:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    port = free_port()
    command = [sys.executable, __file__, "--serve", str(db), "--port", str(port)]
    command += ["--loop", loop, "--http", http]
    proc = subprocess.Popen(command, stdout=sys.stderr)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: bench\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc, port
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the server did not start within 60 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# -- a minimal HTTP/1.1 keep-alive client --------------------------------------------------


class Conn:
    """One keep-alive connection; `request` sends one request and reads its answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {
        "p50_ms": at(0.50),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
        "max_ms": round(ordered[-1], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


async def closed_loop(
    port: int, bodies: list[bytes], path: str, concurrency: int, expect: set[int]
) -> dict[str, Any]:
    """Send every body with `concurrency` requests in flight; latency per request."""
    conns = [await Conn.open(port) for _ in range(concurrency)]
    latencies: list[float] = []
    failed: list[str] = []
    work = iter(bodies)

    async def worker(conn: Conn) -> None:
        for body in work:
            t0 = time.perf_counter()
            status, answer = await conn.request("POST", path, body)
            latencies.append((time.perf_counter() - t0) * 1000)
            if status not in expect:
                failed.append(f"{status}: {answer[:200]!r}")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    seconds = time.perf_counter() - t0
    for c in conns:
        c.close()
    if failed:
        raise RuntimeError(f"{len(failed)} requests failed, e.g. {failed[0]}")
    return {"requests": len(bodies), "seconds": round(seconds, 4), **percentiles(latencies)}


# -- 1. run submissions --------------------------------------------------------------------


async def bench_runs(port: int, n: int, concurrency: int) -> dict[str, Any]:
    def body(i: int) -> bytes:
        return json.dumps({"workflow": "noop", "input": i}).encode()

    warm = [body(-i) for i in range(1, 201)]
    await closed_loop(port, warm, "/api/v1/runs", concurrency, {201})
    await asyncio.sleep(0.5)
    result = await closed_loop(
        port, [body(i) for i in range(n)], "/api/v1/runs", concurrency, {201}
    )
    result["throughput"] = round(n / result["seconds"], 1)
    result["concurrency"] = concurrency
    # every run executes in the server meanwhile; wait for them, untimed
    conn = await Conn.open(port)
    try:
        t0 = time.perf_counter()
        deadline = time.monotonic() + 120
        while (left := await _unfinished(conn)) != 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        result["all_finished_s"] = round(time.perf_counter() - t0, 3) if left == 0 else None
    finally:
        conn.close()
    return result


async def _unfinished(conn: Conn) -> int:
    left = 0
    for status in ("ENQUEUED", "RUNNING"):
        code, answer = await conn.request("GET", f"/api/v1/runs?status={status}&limit=1")
        if code != 200:
            return -1
        left += len(json.loads(answer)["items"])
    return left


# -- 2. batched ingest ---------------------------------------------------------------------


def event_batch(batch: int, start: int, type: str = "bench.ingest") -> bytes:
    events = [
        {
            "type": type,
            "source": "bench://control",
            "subject": f"item-{start + i}",
            "data": {"n": start + i, "payload": "x" * 64},
        }
        for i in range(batch)
    ]
    return json.dumps({"events": events}).encode()


async def bench_ingest(port: int, batches: int, batch: int, concurrency: int) -> dict[str, Any]:
    bodies = [event_batch(batch, i * batch) for i in range(batches)]
    await closed_loop(port, bodies[:4], "/api/v1/events", concurrency, {202})
    result = await closed_loop(port, bodies, "/api/v1/events", concurrency, {202})
    events = batches * batch
    result.update(
        events=events,
        batch=batch,
        concurrency=concurrency,
        throughput=round(events / result["seconds"], 1),
    )
    return result


# -- 3. WebSocket fan-out ------------------------------------------------------------------


async def bench_fanout(
    port: int, subscribers: int, events: int, per_batch: int, interval: float, compression: bool
) -> dict[str, Any]:
    import websockets

    url = f"ws://127.0.0.1:{port}/api/v1/events?type=bench.tick"
    options: dict[str, Any] = {"max_queue": None, "open_timeout": 30}
    if not compression:
        options["compression"] = None
    clients = [await websockets.connect(url, **options) for _ in range(subscribers)]
    latencies: list[float] = []
    counts = [0] * subscribers
    out_of_order = 0

    async def listen(k: int, ws: Any) -> None:
        nonlocal out_of_order
        last = 0
        while counts[k] < events:
            message = await ws.recv()
            now = time.time()
            event = json.loads(message)
            latencies.append((now - event["data"]["sent_at"]) * 1000)
            if event["seq"] <= last:
                out_of_order += 1
            last = event["seq"]
            counts[k] += 1

    listeners = [asyncio.ensure_future(listen(k, ws)) for k, ws in enumerate(clients)]
    await asyncio.sleep(0.5)  # every subscription is in place
    publisher = await Conn.open(port)
    t0 = time.perf_counter()
    for start in range(0, events, per_batch):
        n = min(per_batch, events - start)
        body = [
            {
                "type": "bench.tick",
                "source": "bench://publisher",
                "data": {"n": start + i, "sent_at": time.time()},
            }
            for i in range(n)
        ]
        status, answer = await publisher.request(
            "POST", "/api/v1/events", json.dumps({"events": body}).encode()
        )
        if status != 202:
            raise RuntimeError(f"publish failed: {status} {answer[:200]!r}")
        await asyncio.sleep(interval)
    publish_seconds = time.perf_counter() - t0
    try:
        await asyncio.wait_for(asyncio.gather(*listeners), 60)
    finally:
        publisher.close()
        for ws in clients:
            await ws.close()
    return {
        "subscribers": subscribers,
        "events": events,
        "per_batch": per_batch,
        "interval_ms": interval * 1000,
        "compression": compression,
        "deliveries": len(latencies),
        "out_of_order": out_of_order,
        "publish_seconds": round(publish_seconds, 3),
        **percentiles(latencies),
    }


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3000, help="run submissions")
    parser.add_argument("--concurrency", type=int, default=64, help="submissions in flight")
    parser.add_argument("--batches", type=int, default=200, help="ingest batches")
    parser.add_argument("--batch", type=int, default=500, help="events per ingest batch")
    parser.add_argument("--ingest-concurrency", type=int, default=4, help="batches in flight")
    parser.add_argument("--subscribers", type=int, default=100, help="WebSocket subscribers")
    parser.add_argument("--events", type=int, default=200, help="events published to them")
    parser.add_argument("--per-batch", type=int, default=4, help="events per publish")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between publishes")
    parser.add_argument(
        "--compression", action="store_true", help="subscribers offer permessage-deflate"
    )
    parser.add_argument("--workdir", type=Path, default=HERE / ".work")
    parser.add_argument(
        "--phases",
        type=lambda text: set(text.split(",")),
        default={"runs", "ingest", "fanout"},
        help="which to run: runs,ingest,fanout (default all)",
    )
    parser.add_argument("--profile", type=Path, help="py-spy binary: record the server")
    parser.add_argument("--loop", default="uvloop")
    parser.add_argument("--http", default="httptools")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def client_side(args: argparse.Namespace, port: int, pid: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "runs" in args.phases:
        progress(f"runs: {args.runs} submissions, {args.concurrency} in flight")
        cpu = cpu_seconds(pid), cpu_seconds(os.getpid())
        runs = out["runs"] = await bench_runs(port, args.runs, args.concurrency)
        runs["server_cpu_ms_per_run"] = round((cpu_seconds(pid) - cpu[0]) * 1000 / args.runs, 3)
        runs["client_cpu_ms_per_run"] = round(
            (cpu_seconds(os.getpid()) - cpu[1]) * 1000 / args.runs, 3
        )
        progress(f"  {runs['throughput']:,.0f} runs/s (p50 {runs['p50_ms']} ms)")
    if "ingest" in args.phases:
        progress(
            f"ingest: {args.batches} batches of {args.batch}, {args.ingest_concurrency} in flight"
        )
        cpu = cpu_seconds(pid)
        ingest = out["ingest"] = await bench_ingest(
            port, args.batches, args.batch, args.ingest_concurrency
        )
        events = args.batches * args.batch
        ingest["server_cpu_us_per_event"] = round((cpu_seconds(pid) - cpu) * 1e6 / events, 2)
        progress(f"  {ingest['throughput']:,.0f} events/s (p50 {ingest['p50_ms']} ms per batch)")
    if "fanout" in args.phases:
        progress(f"fan-out: {args.subscribers} subscribers, {args.events} events")
        cpu = cpu_seconds(pid), cpu_seconds(os.getpid())
        fanout = out["fanout"] = await bench_fanout(
            port, args.subscribers, args.events, args.per_batch, args.interval, args.compression
        )
        deliveries = max(1, fanout["deliveries"])
        fanout["server_cpu_us_per_delivery"] = round(
            (cpu_seconds(pid) - cpu[0]) * 1e6 / deliveries, 2
        )
        # the subscribers share this process: their own cost is part of the latency
        fanout["client_cpu_us_per_delivery"] = round(
            (cpu_seconds(os.getpid()) - cpu[1]) * 1e6 / deliveries, 2
        )
        progress(
            f"  p50 {fanout['p50_ms']} ms, p95 {fanout['p95_ms']} ms, p99 {fanout['p99_ms']} ms"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve is not None:
        serve(args.serve, args.port, args.loop, args.http)
        return 0
    workdir: Path = args.workdir.resolve() / "control"
    workdir.mkdir(parents=True, exist_ok=True)
    proc, port = start_server(workdir / "control.db", args.loop, args.http)
    spy = None
    if args.profile is not None:  # a flame graph of the server, for finding its bottleneck
        out = workdir / f"server-{'-'.join(sorted(args.phases))}.txt"
        spy = subprocess.Popen(
            [
                str(args.profile),
                "record",
                "-p",
                str(proc.pid),
                "-o",
                str(out),
                "-r",
                "200",
                "-f",
                "raw",
                "--gil",  # only what holds the GIL: where the server's CPU goes
            ],
            stdout=sys.stderr,
            stderr=sys.stderr,
        )
        time.sleep(1)
    try:
        figures = asyncio.run(client_side(args, port, proc.pid))
    finally:
        if spy is not None:
            spy.send_signal(2)
            spy.wait(60)
        stop_server(proc)
    result = {
        "system": "baton",
        "server": {"loop": args.loop, "http": args.http, "store": "sqlite", "worker": True},
        "bars": {"runs_per_s": RUNS_BAR, "events_per_s": INGEST_BAR},
        "nproc": len(os.sched_getaffinity(0)),
        **figures,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
