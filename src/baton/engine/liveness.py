"""Who this process is, and whether the process behind a worker row is gone."""

from __future__ import annotations

import os
import socket
from functools import cache

import psutil

from baton.store.records import WorkerRecord


@cache
def hostname() -> str:
    return socket.gethostname()


def process_started_at(pid: int | None = None) -> float:
    return psutil.Process(pid or os.getpid()).create_time()


def is_gone(worker: WorkerRecord, now: float, ttl: float) -> bool:
    """A worker is gone when its heartbeat is older than `ttl`, or, on this host, when its
    process no longer exists (checked by pid and start time, so a reused pid does not count)."""
    if now - worker.heartbeat_at > ttl:
        return True
    if worker.host != hostname():
        return False
    try:
        proc = psutil.Process(worker.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        return abs(proc.create_time() - worker.process_started_at) > 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return True
