"""Read the event log in order without ever skipping an event that commits late.

On PostgreSQL an event's `seq` is drawn when it is inserted, not when it commits, so a reader
may see seq 12 before seq 11 commits. A tail stops at such a gap until the store says every
transaction that was open when the gap was seen has ended; only then is a gap that is still
there skipped for good (its transaction rolled back). On SQLite one writer commits in seq
order, so gaps never wait.
"""

from __future__ import annotations

from baton.store.protocol import Store
from baton.store.records import EventRecord


class EventTail:
    """A position in the event log; `read()` returns the events after it, in seq order."""

    def __init__(self, store: Store, after: int = 0) -> None:
        self.store = store
        self.position = after
        self._gap_at: int | None = None  # the first missing seq of the gap being watched
        self._gap_horizon: object = None
        self._settled: int | None = None  # a gap whose writers have all ended

    def read(self, limit: int = 1000) -> list[EventRecord]:
        """The next events in order; fewer than there are while a gap may still fill. Call
        again (poll) to go on."""
        found = self.store.list_events(after=self.position, limit=limit)
        taken: list[EventRecord] = []
        expected = self.position + 1
        for event in found:
            if event.seq != expected and not self._may_skip(expected):
                break
            taken.append(event)
            expected = event.seq + 1
        if taken:
            self.position = taken[-1].seq
        return taken

    def _may_skip(self, missing: int) -> bool:
        """Whether the seqs from `missing` up to the next event seen will never appear."""
        if self._settled == missing:
            # seen missing by a read that began after every possible writer had ended
            self._settled = None
            return True
        if self._gap_at != missing:
            self._gap_at, self._gap_horizon = missing, self.store.event_horizon()
            return self._gap_horizon is None  # a store that never fills gaps later
        if self.store.event_settled(self._gap_horizon):
            self._settled, self._gap_at = missing, None  # the next read sees the final state
        return False
