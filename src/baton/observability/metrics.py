"""Prometheus metrics: counters the engine bumps as runs and steps go by, and gauges read from
the store when Prometheus scrapes.

Everything lives in one `CollectorRegistry` of Baton's own (`REGISTRY`), not the
prometheus_client default, so that Baton's names never clash with an application's. Counters
count what this process did: each process exposes its own, and Prometheus sums them. The
gauges (`baton_queue_depth`, `baton_runs`, `baton_dlq_size`) describe the whole store, read at
scrape time by `StoreCollector`.

The hot path (a step attempt, a run's end) costs one dict lookup and an increment: the
labelled child of each metric is cached per label values.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

__all__ = [
    "REGISTRY",
    "STEP_BUCKETS",
    "StoreCollector",
    "agent_restarted",
    "register_store",
    "render",
    "run_finished",
    "run_started",
    "step_attempt",
    "step_retry",
    "unregister_store",
    "webhook_delivery",
]

REGISTRY = CollectorRegistry(auto_describe=True)

# 0.5 ms to 60 s: a step is anything from a dict lookup to a slow API call
STEP_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
FINISHED_STATUSES = ("SUCCEEDED", "FAILED", "DEAD", "CANCELLED", "COMPENSATED")
# every run status, so that `baton_runs` has a series (maybe 0) for each
RUN_STATUSES = (
    "ENQUEUED",
    "RUNNING",
    "WAITING",
    "COMPENSATING",
    *FINISHED_STATUSES,
)
_FAILED = frozenset({"FAILED", "DEAD"})
WEBHOOK_RESULTS = ("delivered", "failed", "retrying")

RUNS_STARTED = Counter(
    "baton_runs_started",
    "Runs that began executing (counted once per run, at its first claim).",
    ["workflow"],
    registry=REGISTRY,
)
RUNS_FINISHED = Counter(
    "baton_runs_finished",
    "Runs that reached a terminal status, by status.",
    ["workflow", "status"],
    registry=REGISTRY,
)
RUNS_FAILED = Counter(
    "baton_runs_failed",
    "Runs that ended FAILED or DEAD.",
    ["workflow"],
    registry=REGISTRY,
)
STEP_DURATION = Histogram(
    "baton_step_duration_seconds",
    "Duration of one step attempt (successful or not), in seconds.",
    ["workflow", "step"],
    buckets=STEP_BUCKETS,
    registry=REGISTRY,
)
STEP_RETRIES = Counter(
    "baton_step_retries",
    "Step attempts that failed and were scheduled to run again.",
    ["workflow", "step"],
    registry=REGISTRY,
)
AGENT_RESTARTS = Counter(
    "baton_agent_restarts",
    "Agents restarted by the supervisor (by policy or by an operator).",
    ["agent"],
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "baton_webhook_deliveries",
    "Outbound webhook delivery attempts, by result (delivered, failed, retrying).",
    ["result"],
    registry=REGISTRY,
)

# labelled children, cached by label values: labels() takes a lock and builds a tuple
_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *values: str) -> Any:
    key = (metric, *values)
    child = _children.get(key)
    if child is None:
        child = _children.setdefault(key, metric.labels(*values))
    return child


# -- what the engine, the supervisor and the webhook sender call ----------------------------
def run_started(workflow: str) -> None:
    _child(RUNS_STARTED, workflow).inc()


def run_finished(workflow: str, status: str) -> None:
    """A run of `workflow` reached terminal `status` (a RunStatus or its name)."""
    status = str(status)
    _child(RUNS_FINISHED, workflow, status).inc()
    if status in _FAILED:
        _child(RUNS_FAILED, workflow).inc()


def step_attempt(workflow: str, step: str, seconds: float) -> None:
    """One attempt of `step` took `seconds`, whatever its outcome."""
    _child(STEP_DURATION, workflow, step).observe(seconds)


def step_retry(workflow: str, step: str) -> None:
    _child(STEP_RETRIES, workflow, step).inc()


def agent_restarted(agent: str) -> None:
    _child(AGENT_RESTARTS, agent).inc()


def webhook_delivery(result: str) -> None:
    """One delivery attempt of an outbound webhook: "delivered", "failed" or "retrying"."""
    if result not in WEBHOOK_RESULTS:
        raise ValueError(
            f"webhook delivery result must be one of {WEBHOOK_RESULTS}, got {result!r}"
        )
    _child(WEBHOOK_DELIVERIES, result).inc()


# -- gauges from the store -----------------------------------------------------------------
class _Counts(Protocol):
    def count_runs(self, status: Iterable[str] | None = None) -> dict[str, int]: ...

    def queue_depths(self) -> dict[str, int]: ...


class StoreCollector:
    """Reads the store when scraped: runs per status, ENQUEUED runs per queue, the DLQ size.

    Two cheap aggregate queries per scrape (`count_runs`, `queue_depths`). A store that cannot
    answer leaves its gauges out of that scrape rather than failing the whole page.
    """

    def __init__(self, store: _Counts) -> None:
        self.store = store

    def describe(self) -> list[Metric]:
        return []  # nothing read at registration; the names are Baton's own

    def collect(self) -> Iterator[Metric]:
        try:
            counts = self.store.count_runs()
            depths = self.store.queue_depths()
        except Exception:  # the store is away: the counters still get scraped
            return
        runs = GaugeMetricFamily("baton_runs", "Runs in the store, by status.", labels=["status"])
        for status in sorted(counts.keys() | set(RUN_STATUSES)):
            runs.add_metric([status], counts.get(status, 0))
        yield runs
        depth = GaugeMetricFamily(
            "baton_queue_depth", "ENQUEUED runs in the store, by queue.", labels=["queue"]
        )
        for queue, n in sorted(depths.items()):
            depth.add_metric([queue], n)
        yield depth
        yield GaugeMetricFamily(
            "baton_dlq_size", "Runs in the dead-letter queue (DEAD).", value=counts.get("DEAD", 0)
        )


_GAUGES = frozenset({"baton_runs", "baton_queue_depth", "baton_dlq_size"})
_lock = threading.Lock()
_registered: StoreCollector | None = None


def register_store(store: _Counts) -> StoreCollector:
    """Expose `store`'s gauges in `REGISTRY` (replacing a store registered before: a process
    serving one node has one store)."""
    global _registered
    collector = StoreCollector(store)
    with _lock:
        if _registered is not None:
            REGISTRY.unregister(_registered)
        REGISTRY.register(collector)
        _registered = collector
    return collector


def unregister_store(store: _Counts | None = None) -> None:
    """Stop exposing the registered store's gauges (only if it is `store`, when given)."""
    global _registered
    with _lock:
        if _registered is None or (store is not None and _registered.store is not store):
            return
        REGISTRY.unregister(_registered)
        _registered = None


class _With:
    """REGISTRY plus one store's gauges, for a single exposition."""

    def __init__(self, store: _Counts) -> None:
        self.extra = StoreCollector(store)

    def collect(self) -> Iterator[Metric]:
        for metric in REGISTRY.collect():
            if metric.name not in _GAUGES:  # another store's, registered in this process
                yield metric
        yield from self.extra.collect()


def render(store: _Counts | None = None) -> tuple[bytes, str]:
    """The exposition (Prometheus text format) and its content type, for a /metrics route.

    With `store`, its gauges are included (unless it is the store `register_store` exposes
    already); without, the registered store's are, if any."""
    registered = _registered
    if store is None or (registered is not None and registered.store is store):
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    return generate_latest(_With(store)), CONTENT_TYPE_LATEST  # type: ignore[arg-type]
