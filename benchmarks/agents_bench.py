"""Baton benchmark: the agent supervisor's reaction times and its cost over plain Python.

1. Restart latency after a crash. An agent records the time, tells the orchestrator, and
   exits with an error; its restart policy (no back-off) starts a replacement. Measured:
   from the supervisor observing the exit (AGENT_TERMINATED) to the replacement's start
   (AGENT_STARTED), and from the agent's last word before exiting to that start (which adds
   the kernel's and the sentinel's share). Bar: 50 ms.
2. Start latency of a queued agent once a slot frees. `max_workers=1`, a chain of agents
   that each exit at once: from one agent's exit being observed to the next queued agent's
   start, and from the exiting agent's last word to that start. Bar: 20 ms.
3. Starting and stopping N thread agents and M process agents (every one READY, then
   shutdown) against plain `threading` / `multiprocessing` doing the same (start all, wait
   until each has signalled it runs, ask all to stop, join all; a pipe per child process).
   Same start method for both (forkserver, warmed up first). Reported: seconds each, and
   Baton's ratio.

Usage::

    .venv/bin/python benchmarks/agents_bench.py [--samples 30] [--threads 200] \\
        [--processes 50] [--rounds 3]

Prints one JSON object on one line to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
from typing import Any

from baton.agents import (
    Agent,
    EventType,
    Orchestrator,
    Restart,
    RestartPolicy,
    RunMode,
)
from baton.agents.processes import context, warm_up

START_METHOD = "forkserver"
RESTART_BAR_MS = 50.0
QUEUED_BAR_MS = 20.0


# -- agents (module level: process agents are pickled by reference) --------------------------
class Crasher(Agent):
    def execute(self) -> None:
        self.send(time.time())
        raise RuntimeError("crash")


class Brief(Agent):
    def execute(self) -> None:
        self.send(time.time())


class Idle(Agent):
    def execute(self) -> None:
        self.stopping.wait()


def _plain_process(conn: Any) -> None:
    conn.send("started")
    conn.recv()  # the stop


# -- helpers --------------------------------------------------------------------------------
def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median": round(statistics.median(ordered), 3),
        "p95": round(p95, 3),
        "max": round(ordered[-1], 3),
        "min": round(ordered[0], 3),
    }


def verdict(figures: dict[str, Any], bar: float) -> dict[str, Any]:
    """Against the bar: the worst median (thread or process), and the worst p95."""
    medians = [f["exit_observed_to_start"]["median"] for f in figures.values()]
    p95s = [f["exit_observed_to_start"]["p95"] for f in figures.values()]
    return {"bar_ms": bar, "meets_bar": max(medians) <= bar, "p95_meets_bar": max(p95s) <= bar}


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- 1. restart latency ---------------------------------------------------------------------
def restart_latency(execution: str, samples: int) -> dict[str, Any]:
    orch = Orchestrator(start_method=START_METHOD, history_size=20 * samples + 100)
    policy = RestartPolicy(when=Restart.ON_FAILURE, max_restarts=samples, initial_delay=0)
    orch.register_agent(Crasher, "crasher", execution=execution, restart=policy)
    last_words: dict[int, float] = {}
    orch.on_message(lambda m: last_words.__setitem__(m.generation, m.body))
    orch.start()
    orch.join()
    events = orch.history()
    terminated = {
        e.data["generation"]: e.time for e in events if e.type is EventType.AGENT_TERMINATED
    }
    started = {e.data["generation"]: e.time for e in events if e.type is EventType.AGENT_STARTED}
    observed, end_to_end = [], []
    for generation in range(1, samples + 1):
        if generation + 1 in started and generation in terminated:
            observed.append(1000 * (started[generation + 1] - terminated[generation]))
            if generation in last_words:
                end_to_end.append(1000 * (started[generation + 1] - last_words[generation]))
    return {
        "samples": len(observed),
        "exit_observed_to_start": summary(observed),
        "last_word_to_start": summary(end_to_end),
    }


# -- 2. queued start latency -----------------------------------------------------------------
def queued_latency(execution: str, samples: int) -> dict[str, Any]:
    orch = Orchestrator(max_workers=1, start_method=START_METHOD, history_size=20 * samples + 100)
    names = [f"brief-{i:03d}" for i in range(samples + 1)]
    for name in names:
        orch.register_agent(Brief, name, execution=execution)
    last_words: dict[str, float] = {}
    orch.on_message(lambda m: last_words.__setitem__(m.agent, m.body))
    orch.start()
    orch.join()
    events = orch.history()
    ended = {e.agent: e.time for e in events if e.type is EventType.AGENT_TERMINATED}
    begun = {e.agent: e.time for e in events if e.type is EventType.AGENT_STARTED}
    observed, end_to_end = [], []
    for before, after in itertools.pairwise(names):
        observed.append(1000 * (begun[after] - ended[before]))
        end_to_end.append(1000 * (begun[after] - last_words[before]))
    return {
        "samples": len(observed),
        "exit_observed_to_start": summary(observed),
        "last_word_to_start": summary(end_to_end),
    }


# -- 3. start + stop N agents vs plain Python -------------------------------------------------
def baton_start_stop(count: int, execution: str) -> float:
    orch = Orchestrator(
        run_mode=RunMode.DAEMON, start_method=START_METHOD, history_size=10 * count + 100
    )
    for i in range(count):
        orch.register_agent(Idle, f"idle-{i:04d}", execution=execution)
    ready = threading.Semaphore(0)
    orch.subscribe(lambda e: ready.release(), EventType.AGENT_READY)
    t0 = time.perf_counter()
    orch.start()
    for _ in range(count):
        ready.acquire()
    orch.shutdown()
    return time.perf_counter() - t0


def plain_threads(count: int) -> float:
    started = threading.Semaphore(0)
    stop = threading.Event()

    def body() -> None:
        started.release()
        stop.wait()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=body, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    for _ in range(count):
        started.acquire()
    stop.set()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def plain_processes(count: int) -> float:
    """The plain equivalent, written to be quick: a pipe per child, as Baton has."""
    ctx = context(START_METHOD)
    t0 = time.perf_counter()
    procs, conns = [], []
    for _ in range(count):
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=_plain_process, args=(theirs,))
        proc.start()
        theirs.close()
        procs.append(proc)
        conns.append(ours)
    for conn in conns:
        conn.recv()
    for conn in conns:
        conn.send("stop")
    for proc in procs:
        proc.join()
    return time.perf_counter() - t0


def start_stop(threads: int, processes: int, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, count, baton_run, plain_run in (
        (
            "threads",
            threads,
            lambda: baton_start_stop(threads, "thread"),
            lambda: plain_threads(threads),
        ),
        (
            "processes",
            processes,
            lambda: baton_start_stop(processes, "process"),
            lambda: plain_processes(processes),
        ),
    ):
        baton_times, plain_times = [], []
        for _ in range(rounds):  # interleaved, so drifting machine load hits both alike
            plain_times.append(plain_run())
            baton_times.append(baton_run())
        baton_s = statistics.median(baton_times)
        plain_s = statistics.median(plain_times)
        out[label] = {
            "agents": count,
            "baton_s": round(baton_s, 4),
            "plain_s": round(plain_s, 4),
            "ratio": round(baton_s / plain_s, 2),
            "baton_per_agent_ms": round(1000 * baton_s / count, 3),
            "plain_per_agent_ms": round(1000 * plain_s / count, 3),
            "rounds": rounds,
        }
        progress(f"start+stop {label}: {out[label]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=30, help="restarts / queued starts")
    parser.add_argument("--threads", type=int, default=200)
    parser.add_argument("--processes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="start+stop repetitions")
    args = parser.parse_args()

    warm_up(START_METHOD)
    result: dict[str, Any] = {
        "benchmark": "agents",
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "start_method": START_METHOD,
            "multiprocessing_default": multiprocessing.get_start_method(),
        },
    }
    restart = {ex: restart_latency(ex, args.samples) for ex in ("thread", "process")}
    result["restart_latency_ms"] = {**restart, **verdict(restart, RESTART_BAR_MS)}
    progress(f"restart latency: {result['restart_latency_ms']}")
    queued = {ex: queued_latency(ex, args.samples) for ex in ("thread", "process")}
    result["queued_start_latency_ms"] = {**queued, **verdict(queued, QUEUED_BAR_MS)}
    progress(f"queued start latency: {result['queued_start_latency_ms']}")
    result["start_stop"] = start_stop(args.threads, args.processes, args.rounds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
