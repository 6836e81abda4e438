"""Templates (jinja2, always autoescaped), their filters, and the shapes of the charts."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from baton.store.records import NEVER, StepRecord

HERE = Path(__file__).parent
NONE = "\N{EN DASH}"  # what a missing time, duration or rate shows
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

# run statuses by the colour they are drawn in
TONE = {
    "SUCCEEDED": "ok",
    "APPROVED": "ok",
    "FAILED": "bad",
    "DEAD": "bad",
    "REJECTED": "bad",
    "TIMED_OUT": "bad",
    "COMPENSATED": "warn",
    "COMPENSATING": "warn",
    "RETRYING": "warn",
    "CANCELLED": "muted",
    "RUNNING": "live",
    "WAITING": "wait",
    "PENDING": "wait",
    "ENQUEUED": "muted",
}


def stamp(ts: float | str | None) -> str:
    """Epoch seconds (or an RFC 3339 string) as 'YYYY-MM-DD HH:MM:SS' UTC."""
    if ts is None or ts == "":
        return NONE
    if isinstance(ts, str):
        try:
            ts = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return ts
    if ts >= NEVER:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def span(seconds: float | None) -> str:
    """A duration for people: 840 ms, 3.2 s, 4 min 10 s, 2 h 5 min."""
    if seconds is None:
        return NONE
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def ms(value: float | None) -> str:
    return NONE if value is None else span(value / 1000)


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def compact(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def percent(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.1f}%"


def message(error: Any) -> str:
    """The one line that says what went wrong, from a decoded error document."""
    if error is None:
        return ""
    if isinstance(error, dict):
        kind = error.get("type") or error.get("error") or ""
        text = error.get("message") or error.get("detail") or ""
        if kind or text:
            return f"{kind}: {text}" if kind and text else str(kind or text)
        return compact(error)
    return str(error)


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template, whatever its name: user data is never markup
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        stamp=stamp,
        span=span,
        ms=ms,
        pretty=pretty,
        compact=compact,
        percent=percent,
        message=message,
        tone=lambda status: TONE.get(str(status), "muted"),
    )
    return env


def step_bars(
    steps: list[StepRecord], start: float, end: float | None
) -> list[dict[str, float | None]]:
    """Where each step sits on the run's time axis, in percent: offset, width, seconds."""
    now = time.time()
    end = end if end is not None else now
    starts = [s.started_at for s in steps if s.started_at]
    origin = min([start, *starts]) if starts else start
    ends = [s.finished_at or now for s in steps]
    total = max([end, *ends]) - origin if steps else end - origin
    total = max(total, 1e-6)
    bars = []
    for s in steps:
        finish = s.finished_at if s.finished_at is not None else now
        left = max(0.0, (s.started_at - origin) / total * 100)
        width = max(0.6, (finish - s.started_at) / total * 100)
        bars.append(
            {
                "left": round(min(left, 99.4), 2),
                "width": round(min(width, 100 - min(left, 99.4)), 2),
                "seconds": None
                if s.finished_at is None
                else max(0.0, s.finished_at - s.started_at),
            }
        )
    return bars


def chart(
    timeline: list[dict[str, Any]], width: int = 720, height: int = 140, long: bool = False
) -> dict[str, Any]:
    """Stacked bars (succeeded below, failed above) for a throughput timeline."""
    n = max(len(timeline), 1)
    top = max([slot["succeeded"] + slot["failed"] for slot in timeline] + [1])
    pitch = width / n
    gap = 1 if pitch > 4 else 0
    fmt = "%m-%d %H:%M" if long else "%H:%M"
    bars = []
    for i, slot in enumerate(timeline):
        ok_h = slot["succeeded"] / top * height
        bad_h = slot["failed"] / top * height
        x = round(i * pitch, 2)
        bars.append(
            {
                "x": x,
                "w": round(max(pitch - gap, 0.5), 2),
                "ok_y": round(height - ok_h, 2),
                "ok_h": round(ok_h, 2),
                "bad_y": round(height - ok_h - bad_h, 2),
                "bad_h": round(bad_h, 2),
                "label": datetime.fromtimestamp(slot["start"], UTC).strftime(fmt),
                "succeeded": slot["succeeded"],
                "failed": slot["failed"],
            }
        )
    return {
        "width": width,
        "height": height,
        "top": top,
        "bars": bars,
        "total": sum(slot["succeeded"] + slot["failed"] for slot in timeline),
        "first": bars[0]["label"] if bars else "",
        "last": bars[-1]["label"] if bars else "",
    }


def timelines(
    rows: list[tuple], since: float, until: float, buckets: int
) -> dict[str, list[dict[str, Any]]]:
    """Runs ended per time bucket for each workflow, from `store.finished_runs` rows."""
    width = max((until - since) / max(buckets, 1), 1e-9)
    found: dict[str, list[dict[str, Any]]] = {}
    for name, status, _created, _started, finished in rows:
        slots = found.get(name)
        if slots is None:
            slots = found[name] = [
                {"start": since + i * width, "succeeded": 0, "failed": 0} for i in range(buckets)
            ]
        slot = slots[min(buckets - 1, max(0, int((finished - since) / width)))]
        slot["succeeded" if status == "SUCCEEDED" else "failed"] += 1
    return found
