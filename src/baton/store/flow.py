"""Flow control, the pure part: queue limits, start options and claim admission.

Every backend enforces limits inside its claim transaction with the same maths: it counts what
is active (runs RUNNING or COMPENSATING and owned, per queue and per concurrency key) and the
first starts inside each rate window, hands the counts to an `Admission`, and offers it the
due runs in claim order (priority first, then age). The admission says yes or no to each one
and keeps its counts up to date, so one claim never admits past a limit either.

WAITING runs (asleep, awaiting a signal) hold no slot: they are not active, and take a slot
again only when a claim admits them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from baton.core.errors import InvalidQueueLimit, InvalidStartOption
from baton.store.records import RunRecord

# a run with a concurrency key and no limit anywhere (neither its own key_limit nor its
# queue's key_concurrency) runs alone: a key names something that must not be run twice at once
DEFAULT_KEY_LIMIT = 1
# start times are kept this much longer than their window: a claim may commit a little after
# the moment it read its clock, and must still see every start that could share its window
RATE_HISTORY_MARGIN = 60.0


@dataclass(frozen=True, slots=True)
class Queue:
    """A named queue's limits, shared by every process on the store (None: no limit).

    - `concurrency`: at most this many runs of the queue RUNNING or COMPENSATING at once;
    - `key_concurrency`: at most this many runs with the same `concurrency_key` at once,
      unless a run sets its own `key_limit`;
    - `rate_limit` / `rate_period`: at most `rate_limit` first starts (not resumptions)
      in any `rate_period` seconds.
    """

    name: str
    concurrency: int | None = None
    key_concurrency: int | None = None
    rate_limit: int | None = None
    rate_period: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidQueueLimit("define_queue", "name", self.name, "must be a non-empty string")
        where = f"queue {self.name!r}"
        for option in ("concurrency", "key_concurrency", "rate_limit"):
            value = getattr(self, option)
            if value is not None and not _positive_int(value):
                raise InvalidQueueLimit(
                    where, option, value, "must be a positive integer, or None for no limit"
                )
        if not _positive_number(self.rate_period):
            reason = "must be a positive number of seconds"
            if self.rate_limit is not None:
                reason += f" for rate_limit={self.rate_limit}"
            raise InvalidQueueLimit(where, "rate_period", self.rate_period, reason)

    @property
    def limited(self) -> bool:
        """Whether claims of this queue's runs must be admitted one by one."""
        return self.concurrency is not None or self.rate_limit is not None


def check_start_options(
    workflow: str,
    concurrency_key: str | None,
    key_limit: int | None,
    debounce_key: str | None,
    debounce: float | None,
) -> None:
    """Refuse flow-control options of `app.start` that cannot be honoured, before any write."""
    where = f"start of workflow {workflow!r}"
    if concurrency_key is not None and (
        not isinstance(concurrency_key, str) or not concurrency_key
    ):
        raise InvalidStartOption(
            where, "concurrency_key", concurrency_key, "must be a non-empty string"
        )
    if key_limit is not None:
        if not _positive_int(key_limit):
            raise InvalidStartOption(where, "key_limit", key_limit, "must be an integer >= 1")
        if concurrency_key is None:
            raise InvalidStartOption(
                where, "key_limit", key_limit, "needs a concurrency_key to limit"
            )
    if debounce_key is not None and (not isinstance(debounce_key, str) or not debounce_key):
        raise InvalidStartOption(where, "debounce_key", debounce_key, "must be a non-empty string")
    if debounce is not None:
        if isinstance(debounce, bool) or not isinstance(debounce, int | float):
            raise InvalidStartOption(where, "debounce", debounce, "must be a number of seconds")
        if not math.isfinite(debounce) or debounce < 0:
            raise InvalidStartOption(
                where, "debounce", debounce, "must be a finite number of seconds >= 0"
            )
        if debounce_key is None:
            raise InvalidStartOption(where, "debounce", debounce, "needs a debounce_key as well")
    elif debounce_key is not None:
        raise InvalidStartOption(
            where, "debounce_key", debounce_key, "needs debounce= (seconds to wait) as well"
        )


class Admission:
    """Admits due runs one at a time against the limits, counting what it admits."""

    def __init__(
        self,
        limits: Mapping[str, Queue],
        active: Mapping[str, int],
        active_keys: Mapping[str, int],
        starts: Mapping[str, int],
    ) -> None:
        self.limits = limits
        self.active = dict(active)  # queue -> runs holding a slot
        self.active_keys = dict(active_keys)  # concurrency key -> runs holding a slot
        self.starts = dict(starts)  # queue -> first starts inside the current rate window
        self.rate_blocked: set[str] = set()  # queues that held a first start back this claim

    def full_queues(self) -> list[str]:
        """Queues whose every slot is taken: none of their runs can be admitted."""
        return [
            name
            for name, q in self.limits.items()
            if q.concurrency is not None and self.active.get(name, 0) >= q.concurrency
        ]

    def rate_exhausted(self) -> list[str]:
        """Queues whose rate window is full: their runs may resume, but none may start."""
        return [
            name
            for name, q in self.limits.items()
            if q.rate_limit is not None and self.starts.get(name, 0) >= q.rate_limit
        ]

    def key_limit(self, queue: str, key_limit: int | None) -> int:
        if key_limit is not None:
            return key_limit
        q = self.limits.get(queue)
        if q is not None and q.key_concurrency is not None:
            return q.key_concurrency
        return DEFAULT_KEY_LIMIT

    def admit(self, queue: str, key: str | None, key_limit: int | None, first: bool) -> bool:
        """Take a slot for one due run (`first`: it has never started), or refuse it."""
        q = self.limits.get(queue)
        if q is not None:
            if q.concurrency is not None and self.active.get(queue, 0) >= q.concurrency:
                return False
            if first and q.rate_limit is not None and self.starts.get(queue, 0) >= q.rate_limit:
                self.rate_blocked.add(queue)
                return False
        if key is not None and self.active_keys.get(key, 0) >= self.key_limit(queue, key_limit):
            return False
        self.active[queue] = self.active.get(queue, 0) + 1
        if key is not None:
            self.active_keys[key] = self.active_keys.get(key, 0) + 1
        if first and q is not None and q.rate_limit is not None:
            self.starts[queue] = self.starts.get(queue, 0) + 1
        return True


class Claimed(list[RunRecord]):
    """The runs a claim took (highest priority first, then oldest); `retry_at` is when runs
    that a rate limit held back may be admitted (None when a rate held nothing back);
    `unregistered`: nothing was claimed because the worker's row is gone."""

    retry_at: float | None

    def __init__(
        self,
        runs: Iterable[RunRecord] = (),
        retry_at: float | None = None,
        unregistered: bool = False,
    ) -> None:
        super().__init__(runs)
        self.retry_at = retry_at
        self.unregistered = unregistered


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _positive_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )
