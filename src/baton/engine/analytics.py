"""Latency percentiles, success rates and failure counts per workflow and step over a window."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from baton.store.protocol import Store

_FAILED = ("FAILED", "DEAD", "COMPENSATED")


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _latency(durations: list[float]) -> dict[str, float | None]:
    durations.sort()

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 3)

    return {
        "p50_ms": ms(percentile(durations, 50)),
        "p95_ms": ms(percentile(durations, 95)),
        "p99_ms": ms(percentile(durations, 99)),
    }


def summarize(
    store: Store, since: float, until: float, workflow: str | None = None, buckets: int = 30
) -> dict[str, Any]:
    """Runs that ended in [since, until): per workflow and per step, counts by status, the
    success rate and latency percentiles; plus runs ended per time bucket, for charts."""
    width = max((until - since) / max(buckets, 1), 1e-9)
    timeline = [{"start": since + i * width, "succeeded": 0, "failed": 0} for i in range(buckets)]
    flows: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"count": 0, "by_status": defaultdict(int), "durations": []}
    )
    for name, status, created, _started, finished in store.finished_runs(since, until, workflow):
        flow = flows[name]
        flow["count"] += 1
        flow["by_status"][status] += 1
        flow["durations"].append(max(0.0, finished - created))
        slot = timeline[min(buckets - 1, int((finished - since) / width))]
        slot["succeeded" if status == "SUCCEEDED" else "failed"] += 1
    steps: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"count": 0, "failed": 0, "retried": 0, "durations": []}
    )
    for name, step, kind, status, attempts, started, finished in store.finished_steps(
        since, until, workflow
    ):
        if kind != "step":
            continue
        entry = steps[(name, step)]
        entry["count"] += 1
        entry["failed"] += status == "FAILED"
        entry["retried"] += (attempts or 1) > 1
        if finished is not None:
            entry["durations"].append(max(0.0, finished - started))
    workflows = []
    for name in sorted(flows):
        flow = flows[name]
        by_status = dict(flow["by_status"])
        ok = by_status.get("SUCCEEDED", 0)
        failed = sum(by_status.get(s, 0) for s in _FAILED)
        workflows.append(
            {
                "workflow": name,
                "runs": flow["count"],
                "by_status": by_status,
                "failures": failed,
                "success_rate": round(ok / flow["count"], 4) if flow["count"] else None,
                **_latency(flow["durations"]),
                "steps": [
                    {
                        "step": step,
                        "count": entry["count"],
                        "failures": entry["failed"],
                        "retried": entry["retried"],
                        "success_rate": round(1 - entry["failed"] / entry["count"], 4),
                        **_latency(entry["durations"]),
                    }
                    for (wf, step), entry in sorted(steps.items())
                    if wf == name
                ],
            }
        )
    return {"since": since, "until": until, "workflows": workflows, "timeline": timeline}
