"""Agents that repeat: `LoopingAgent` (as fast as it can, `limit` times) and `PeriodicAgent`
(every `interval` seconds, on a fixed grid so the period does not drift)."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from baton.agents.agent import Agent
from baton.agents.errors import RecoverableError


class LoopingAgent(Agent):
    """Calls `step(iteration)` until stopped, `limit` iterations have run, or `finish()`.

    An exception listed in `recoverable` (by default only `RecoverableError`) is reported as
    AGENT_ERROR and the loop goes on after `error_delay` seconds; any other ends the agent
    FAILED (and its restart policy decides what follows).

    `limit` and `error_delay` may also come from the config: a `limit` field there wins.
    """

    limit: ClassVar[int | None] = None
    recoverable: ClassVar[tuple[type[BaseException], ...]] = (RecoverableError,)
    error_delay: ClassVar[float] = 0.0

    iteration = 0  # iterations started so far
    _finished = False

    def step(self, iteration: int) -> Any:
        """One iteration (numbered from 1)."""
        raise NotImplementedError(f"{type(self).__qualname__} must override step()")

    def finish(self) -> None:
        """End the loop after the current iteration: the agent COMPLETES."""
        self._finished = True

    def execute(self) -> None:
        limit = self._setting("limit")
        while not self.stopping.is_set() and not self._finished:
            if limit is not None and self.iteration >= limit:
                return
            self.iteration += 1
            try:
                self.step(self.iteration)
            except self.recoverable as exc:
                self.report_error(exc)
                delay = self._setting("error_delay")
                if delay and self.wait(delay):
                    return
            self._beat()
            if self._finished or (limit is not None and self.iteration >= limit):
                return
            if not self._before_next():
                return

    def _before_next(self) -> bool:
        """Between iterations; False ends the loop (a stop was asked for)."""
        return True

    def _setting(self, name: str) -> Any:
        value = getattr(self.config, name, None)
        return getattr(self, name) if value is None else value


class PeriodicAgent(LoopingAgent):
    """Calls `step(iteration)` every `interval` seconds.

    Ticks sit on a fixed grid (start + k * interval), so the time `step` takes does not push
    later ticks back. A step that overruns one or more ticks makes them count as missed
    (`self.missed_ticks`): the next step runs at the next grid point, never in a burst. The
    wait between ticks returns at once when a stop is asked for. `interval` (and `limit`)
    may come from the config.
    """

    interval: ClassVar[float] = 1.0
    run_immediately: ClassVar[bool] = True  # first step at start; False: after one interval

    missed_ticks = 0

    def execute(self) -> None:
        period = float(self._setting("interval"))
        if period <= 0:
            raise ValueError(f"agent {self.name!r}: interval must be > 0, got {period}")
        self._period = period
        if not self.run_immediately and self.wait(period):
            return
        self._next = time.monotonic()  # the grid starts at the first step
        super().execute()

    def _before_next(self) -> bool:
        self._next, missed = next_tick(self._next, self._period, time.monotonic())
        self.missed_ticks += missed
        return not self.wait(self._next - time.monotonic())


def next_tick(previous: float, period: float, now: float) -> tuple[float, int]:
    """The grid point after `previous` (or later, if `now` is already past it) and how many
    grid points were skipped because `now` had passed them."""
    due = previous + period
    if now <= due:
        return due, 0
    behind = int((now - due) // period) + 1
    return due + behind * period, behind
