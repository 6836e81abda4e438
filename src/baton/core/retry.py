"""Retry policy and its back-off maths: pure and deterministic under a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from baton.core.errors import NonRetryableError


@dataclass(frozen=True, slots=True)
class Retry:
    """How a failing step is retried.

    `max_attempts` counts the first try. The delay before attempt n+1 is
    `min(max_delay, initial * backoff ** (n - 1))`, drawn uniformly from [0, delay] when
    `jitter` is on ("full jitter"). Exceptions in `non_retryable` fail the step at once.
    """

    max_attempts: int = 3
    initial: float = 1.0
    backoff: float = 2.0
    max_delay: float = 60.0
    jitter: bool = True
    non_retryable: tuple[type[BaseException], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"Retry.max_attempts must be >= 1, got {self.max_attempts}")
        if self.initial < 0 or self.max_delay < 0:
            raise ValueError("Retry.initial and Retry.max_delay must be >= 0")
        if self.backoff < 1:
            raise ValueError(f"Retry.backoff must be >= 1, got {self.backoff}")

    def is_retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, NonRetryableError):
            return False
        return not (self.non_retryable and isinstance(exc, self.non_retryable))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return backoff_delay(attempt, self.initial, self.backoff, self.max_delay, self.jitter, rng)

    def delays(self, seed: int | str = 0) -> list[float]:
        """Every delay this policy would wait, in order, for a given seed."""
        rng = random.Random(seed)
        return [self.delay(n, rng) for n in range(1, self.max_attempts)]


def backoff_delay(
    attempt: int,
    initial: float,
    backoff: float,
    max_delay: float,
    jitter: bool,
    rng: random.Random | None = None,
) -> float:
    """Exponential back-off with a cap and optional full jitter."""
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    exponent = min(attempt - 1, 1024)  # past this the cap applies anyway
    try:
        ceiling = min(max_delay, initial * backoff**exponent)
    except OverflowError:
        ceiling = max_delay
    if not jitter:
        return ceiling
    return (rng or random).uniform(0.0, ceiling)
