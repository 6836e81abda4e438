"""Schedule maths: which instants a schedule fires at, and what one firing pass does.

Pure functions of their arguments (no store, no clock), so they are tested on their own.

Slots are UTC epoch seconds. A cron schedule's slots are computed by croniter on aware
datetimes in the schedule's IANA time zone; an interval schedule (`every=N`) fires at the
multiples of N seconds since the Unix epoch, so every process computes the same slots without
sharing an anchor. Around daylight-saving changes a wall-clock time fires at most once:

- a time that does not exist (spring forward) fires once, when the clock jumps (croniter's rule);
- a time that happens twice (fall back) fires at its first occurrence only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import croniter
from croniter.croniter import CroniterBadCronError, CroniterBadDateError, CroniterError

from baton.core.errors import ScheduleError
from baton.store.records import ScheduleRecord

CRON = "cron"
EVERY = "every"
OVERLAP_POLICIES = ("skip", "buffer_one", "allow_all")
# croniter's columns: five classic ones, then optional seconds and year
CRON_FIELDS = ("minute", "hour", "day of month", "month", "day of week", "second", "year")

MAX_PER_PASS = 100  # runs one pass may start for one schedule; the rest follow in the next pass
SAMPLE = 20  # skipped slots listed by name in a `baton.schedule.skipped` event
COUNT_CAP = 500  # cron slots counted one by one before a skip count is reported as a floor
_REPEATS = 100_000  # repeated wall-clock times one search may pass over (a fall-back hour)


def slot_iso(slot: float) -> str:
    """A slot as UTC ISO 8601 (`2024-03-31T01:00:00Z`), the identity of its firing."""
    text = datetime.fromtimestamp(slot, UTC).isoformat()
    return text.replace("+00:00", "Z")


def slot_key(schedule: str, slot: float) -> str:
    """The idempotency key of the run a slot starts: one run per slot, whoever fires it."""
    return f"schedule:{schedule}:{slot_iso(slot)}"


def zone(name: str, timezone: object) -> ZoneInfo:
    """The IANA time zone `timezone`, or ScheduleError naming schedule `name`."""
    if not isinstance(timezone, str) or not timezone:
        raise ScheduleError(
            name, f"timezone= takes an IANA name like 'Europe/Berlin', got {timezone!r}"
        )
    try:
        return ZoneInfo(timezone)
    except Exception:  # not found, a malformed key, or a directory of zones
        raise ScheduleError(
            name, f"unknown time zone {timezone!r} (use an IANA name like 'Europe/Berlin')"
        ) from None


@dataclass(frozen=True, slots=True)
class Timing:
    """When a schedule fires: a cron expression in a time zone, or a fixed interval."""

    kind: str  # CRON or EVERY
    spec: str  # the cron expression, or the interval in seconds
    timezone: str = "UTC"

    @classmethod
    def parse(
        cls,
        name: str,
        cron: str | None,
        every: float | None,
        timezone: str = "UTC",
        now: float = 0.0,
    ) -> Timing:
        """Validate a declaration's timing; ScheduleError says what is wrong."""
        if (cron is None) == (every is None):
            which = "both" if cron is not None else "neither"
            raise ScheduleError(name, f"give exactly one of cron= or every= ({which} given)")
        zone(name, timezone)
        if every is not None:
            if isinstance(every, bool) or not isinstance(every, int | float):
                raise ScheduleError(name, f"every= takes seconds as a number, got {every!r}")
            if not math.isfinite(every) or every <= 0:
                raise ScheduleError(name, f"every= must be a number of seconds > 0, got {every!r}")
            seconds = float(every)
            spec = str(int(seconds)) if seconds.is_integer() else repr(seconds)
            return cls(EVERY, spec, timezone)
        check_cron(name, cron)
        assert cron is not None
        timing = cls(CRON, " ".join(cron.split()), timezone)
        if timing.next_after(now) is None:
            raise ScheduleError(
                name, f"cron expression {cron!r} never matches a date from now on", "cron"
            )
        return timing

    @classmethod
    def of(cls, schedule: ScheduleRecord) -> Timing:
        return cls(schedule.kind, schedule.spec, schedule.timezone)

    @property
    def seconds(self) -> float:
        return float(self.spec)

    def describe(self) -> str:
        if self.kind == EVERY:
            return f"every {self.spec}s"
        return f"cron {self.spec} ({self.timezone})"

    # -- slots -------------------------------------------------------------------------------
    def next_after(self, t: float) -> float | None:
        """The first slot strictly after `t` (None: the expression matches no later date)."""
        return next(self._slots_from(t, inclusive=False), None)

    def first_from(self, t: float) -> float | None:
        """The first slot at or after `t`."""
        return next(self._slots_from(t, inclusive=True), None)

    def latest(self, at: float) -> float | None:
        """The last slot at or before `at` (None if there is none)."""
        if self.kind == EVERY:
            return self._every_slot(self._index_at_or_before(at))
        it = croniter(self.spec, datetime.fromtimestamp(at + 0.001, ZoneInfo(self.timezone)))
        for _ in range(64):
            try:
                candidate = it.get_prev(datetime).timestamp()
            except CroniterError:
                return None
            # croniter's backward search is only a hint: the forward rules define the slots
            slot = self.first_from(candidate) if candidate <= at else None
            if slot is not None and slot <= at:
                for following in self._slots_from(slot, inclusive=False):
                    if following > at:
                        break
                    slot = following
                return slot
        return None

    def between(self, lo: float, hi: float, limit: int) -> list[float]:
        """The slots in [lo, hi], oldest first, at most `limit` of them."""
        out: list[float] = []
        if hi < lo or limit <= 0:
            return out
        for slot in self._slots_from(lo, inclusive=True):
            if slot > hi or len(out) >= limit:
                break
            out.append(slot)
        return out

    def count(self, lo: float, hi: float, cap: int = COUNT_CAP) -> tuple[int, bool, list[float]]:
        """How many slots lie in [lo, hi): (count, exact, the first SAMPLE of them).

        Interval counts are exact; cron slots are counted up to `cap`, then `exact` is False.
        """
        if hi <= lo:
            return 0, True, []
        if self.kind == EVERY:
            first = self._index_at_or_before(lo)
            first += self._every_slot(first) < lo
            last = self._index_at_or_before(hi)
            last -= self._every_slot(last) >= hi
            n = max(0, last - first + 1)
            return n, True, [self._every_slot(k) for k in range(first, first + min(n, SAMPLE))]
        found = [s for s in self.between(lo, hi, cap + 1) if s < hi]
        return min(len(found), cap), len(found) <= cap, found[:SAMPLE]

    # -- internals ---------------------------------------------------------------------------
    def _every_slot(self, k: int) -> float:
        # rounded to microseconds so that every process names the slot the same way
        return round(k * self.seconds, 6)

    def _index_at_or_before(self, t: float) -> int:
        """The largest k whose slot is at or before `t` (division alone may be off by one)."""
        k = math.floor(t / self.seconds)
        while self._every_slot(k + 1) <= t:
            k += 1
        while self._every_slot(k) > t:
            k -= 1
        return k

    def _slots_from(self, t: float, inclusive: bool) -> Iterator[float]:
        """Slots after `t` (and `t` itself when `inclusive`), oldest first; the one place
        that decides what a slot is."""
        if self.kind == EVERY:
            k = self._index_at_or_before(t)
            if self._every_slot(k) < t or not inclusive:
                k += 1
            while True:
                yield self._every_slot(k)
                k += 1
        tz = ZoneInfo(self.timezone)
        # cron slots fall on whole seconds: starting a millisecond early includes `t`
        start = t - 0.001 if inclusive else t
        it = croniter(self.spec, datetime.fromtimestamp(start, tz))
        last, passed = start, 0
        while True:
            try:
                slot = it.get_next(datetime).timestamp()
            except CroniterBadDateError:  # no later date matches (a year field, Feb 30...)
                return
            if slot <= last or (inclusive and slot < t) or _repeated(slot, tz):
                passed += 1
                if passed > _REPEATS:
                    return
                continue
            last = slot
            yield slot


def _repeated(slot: float, tz: ZoneInfo) -> bool:
    """True for the second occurrence of a wall-clock time that happens twice (fall back)."""
    local = datetime.fromtimestamp(slot, tz)
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def check_cron(name: str, expression: object) -> None:
    """Raise ScheduleError naming the field of `expression` that croniter rejects."""
    if not isinstance(expression, str) or not expression.strip():
        raise ScheduleError(name, f"cron= takes a cron expression, got {expression!r}", "cron")
    fields = expression.split()
    if not expression.strip().startswith("@") and len(fields) not in (5, 6, 7):
        raise ScheduleError(
            name,
            f"cron expression {expression!r} has {len(fields)} field(s); expected 5 "
            f"(minute hour day-of-month month day-of-week), 6 (then second) or 7 (then year)",
            "cron",
        )
    try:
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except (CroniterBadCronError, ValueError, KeyError, TypeError) as exc:
        for i, value in enumerate(fields if len(fields) > 1 else ()):
            probe = ["*"] * len(fields)
            probe[i] = value
            try:
                croniter(" ".join(probe), datetime(2000, 1, 1, tzinfo=UTC))
            except (CroniterBadCronError, ValueError, KeyError, TypeError):
                raise ScheduleError(
                    name,
                    f"cron expression {expression!r} does not parse: the {CRON_FIELDS[i]} "
                    f"field {value!r} is not valid",
                    CRON_FIELDS[i],
                ) from None
        raise ScheduleError(
            name, f"cron expression {expression!r} does not parse: {exc}", "cron"
        ) from None


def check_overlap(name: str, overlap: object) -> str:
    if overlap not in OVERLAP_POLICIES:
        raise ScheduleError(
            name, f"unknown overlap policy {overlap!r}; one of {', '.join(OVERLAP_POLICIES)}"
        )
    return str(overlap)


def check_catchup(name: str, catchup: object) -> float:
    ok = isinstance(catchup, int | float) and not isinstance(catchup, bool)
    if not ok or not math.isfinite(catchup) or catchup < 0:  # type: ignore[arg-type]
        raise ScheduleError(name, f"catchup= must be a number of seconds >= 0, got {catchup!r}")
    return float(catchup)  # type: ignore[arg-type]


# -- one firing pass ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Skipped:
    """Slots a pass does not start runs for, and why ("catchup" or "overlap")."""

    reason: str
    count: int
    sample: tuple[float, ...]  # the first few, oldest first
    exact: bool = True  # False: at least `count` (a long outage, counted up to a cap)


@dataclass(frozen=True, slots=True)
class Pass:
    """What a pass at some instant considers for one schedule."""

    candidates: tuple[float, ...]  # slots that start a run unless the overlap policy says no
    skipped: tuple[Skipped, ...]
    next_fire_at: float | None  # None: the expression matches no later date


def plan_pass(
    timing: Timing,
    next_fire_at: float,
    now: float,
    catchup: float,
    overlap: str,
    limit: int = MAX_PER_PASS,
) -> Pass:
    """The slots due at `now` since `next_fire_at`, after the catch-up rule.

    The latest due slot is always a candidate; earlier missed ones only if they are at most
    `catchup` seconds old, and only under "allow_all" (the other policies start one run per
    pass, so their earlier due slots are skipped as overlapping). Under "allow_all" a pass
    takes at most `limit` slots; `next_fire_at` then points at the next one.
    """
    if next_fire_at > now:
        return Pass((), (), next_fire_at)
    latest = timing.latest(now)
    if latest is None or latest < next_fire_at:
        latest = next_fire_at
    window = max(next_fire_at, now - catchup)
    skipped: list[Skipped] = []
    n, exact, sample = timing.count(next_fire_at, min(window, latest))
    if n:
        skipped.append(Skipped("catchup", n, tuple(sample), exact))
    if overlap != "allow_all":
        n, exact, sample = timing.count(window, latest)
        if n:
            skipped.append(Skipped("overlap", n, tuple(sample), exact))
        return Pass((latest,), tuple(skipped), timing.next_after(latest))
    slots = timing.between(window, latest, limit + 1) if latest >= window else []
    if len(slots) > limit:  # a long backlog: this much now, the rest in the next pass
        return Pass(tuple(slots[:limit]), tuple(skipped), slots[limit])
    if not slots or slots[-1] != latest:
        slots.append(latest)
    return Pass(tuple(slots), tuple(skipped), timing.next_after(latest))


def admit(overlap: str, active: int, waiting: int) -> bool:
    """Whether a pass's candidates start runs, given this schedule's unfinished runs.

    `active`: runs of the schedule that have not ended; `waiting`: those not started yet.
    """
    if overlap == "skip":
        return active == 0
    if overlap == "buffer_one":
        return waiting == 0
    return True
