"""Per-agent resource figures from psutil.

A process agent has its own CPU time, RSS and thread count. A thread agent shares the
orchestrator's process: it gets that process's RSS and thread count, and its own thread's
CPU time where the platform reports per-thread times (Linux does).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil


class StatsSampler:
    """Keeps the previous sample per agent so `cpu_percent` covers the time since the last
    call (since the agent's start on the first)."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, int], tuple[float, float]] = {}
        self._lock = threading.Lock()

    def sample(self, running: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`running`: dicts with name, generation, execution, pid, native_thread_id,
        started_at (wall clock)."""
        me = psutil.Process()
        try:
            own_threads = {t.id: t.user_time + t.system_time for t in me.threads()}
        except (psutil.Error, NotImplementedError):
            own_threads = {}
        with me.oneshot():
            own = {
                "rss": me.memory_info().rss,
                "threads": me.num_threads(),
                "cpu": sum(me.cpu_times()[:2]),
            }
        now = time.time()
        out = []
        for agent in running:
            uptime = max(0.0, now - agent["started_at"])
            doc: dict[str, Any] = {
                "name": agent["name"],
                "execution": agent["execution"],
                "generation": agent["generation"],
                "pid": agent["pid"],
                "uptime": round(uptime, 3),
            }
            if agent["execution"] == "process":
                doc.update(_process_figures(agent["pid"]))
            else:
                cpu = own_threads.get(agent.get("native_thread_id") or -1)
                doc.update(
                    cpu_seconds=None if cpu is None else round(cpu, 3),
                    rss=own["rss"],
                    threads=own["threads"],
                    process_cpu_seconds=round(own["cpu"], 3),
                    shared_process=True,
                )
            doc["cpu_percent"] = self._percent(agent, doc.get("cpu_seconds"), uptime, now)
            out.append(doc)
        return out

    def _percent(
        self, agent: dict[str, Any], cpu: float | None, uptime: float, now: float
    ) -> float | None:
        if cpu is None:
            return None
        key = (agent["name"], agent["generation"])
        with self._lock:
            last_cpu, last_time = self._last.get(key, (0.0, now - uptime))
            self._last[key] = (cpu, now)
        elapsed = now - last_time
        return round(100.0 * (cpu - last_cpu) / elapsed, 1) if elapsed > 0 else 0.0


def _process_figures(pid: int) -> dict[str, Any]:
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            times = proc.cpu_times()
            return {
                "cpu_seconds": round(times.user + times.system, 3),
                "rss": proc.memory_info().rss,
                "threads": proc.num_threads(),
                "children": len(proc.children(recursive=True)),
            }
    except psutil.Error as exc:
        return {"cpu_seconds": None, "rss": None, "threads": None, "error": type(exc).__name__}
