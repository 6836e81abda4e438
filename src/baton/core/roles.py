"""Roles a control-plane token carries; each grants everything the roles below it grant."""

from __future__ import annotations

from enum import IntEnum


class Role(IntEnum):
    VIEWER = 1  # reads runs, events, agents, metrics
    OPERATOR = 2  # acts on runs: start, cancel, signal, approve, redrive; agents; schedules
    ADMIN = 3  # configures the node: webhook subscriptions, feature flags

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            known = ", ".join(r.name.lower() for r in cls)
            raise ValueError(f"unknown role {name!r} (known: {known})") from None

    def __str__(self) -> str:
        return self.name.lower()
