"""Outbound webhooks, the pure part: subscription and delivery records, event-type filters.

A subscription names a URL and the event types it wants. Every event logged after the
subscription was created (or last re-activated) whose type matches becomes one delivery row,
exactly once per (subscription, event). A delivery is PENDING until it is DELIVERED (the
receiver answered 2xx) or FAILED (every attempt used up; kept, with the last answer, until
an operator redelivers it). A PENDING delivery that a deliverer holds has an `owner` and a
`lease_expires_at`; a lease that runs out makes it due again for any deliverer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from baton.store.records import EventRecord

# the event-log read position of the fan-out, shared by every deliverer on the store
FAN_OUT_CURSOR = "webhooks"


def start_cursor(subscription_id: str) -> str:
    """The cursor row holding the last event seq a subscription does not receive."""
    return f"webhook:{subscription_id}"


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


SUBSCRIPTION_COLUMNS = (
    "id",
    "url",
    "event_types",
    "secret",
    "description",
    "active",
    "created_at",
    "updated_at",
)
DELIVERY_COLUMNS = (
    "id",
    "subscription_id",
    "event_seq",
    "event_id",
    "event_type",
    "status",
    "attempts",
    "available_at",
    "owner",
    "lease_expires_at",
    "last_status",
    "last_error",
    "created_at",
    "updated_at",
    "delivered_at",
)


@dataclass(slots=True)
class WebhookSubscription:
    id: str
    url: str
    event_types: list[str]
    secret: str
    description: str | None
    active: bool
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Sequence) -> WebhookSubscription:
        values = dict(zip(SUBSCRIPTION_COLUMNS, row, strict=True))
        values["event_types"] = json.loads(values["event_types"])
        values["active"] = bool(values["active"])
        return cls(**values)

    def row(self) -> tuple:
        return (
            self.id,
            self.url,
            json.dumps(self.event_types),
            self.secret,
            self.description,
            int(self.active),
            self.created_at,
            self.updated_at,
        )


@dataclass(slots=True)
class WebhookDelivery:
    """One event for one subscription. `attempts` counts the attempts begun (a claim)."""

    id: str
    subscription_id: str
    event_seq: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    available_at: float
    owner: str | None
    lease_expires_at: float | None
    last_status: int | None
    last_error: str | None
    created_at: float
    updated_at: float
    delivered_at: float | None

    @classmethod
    def from_row(cls, row: Sequence) -> WebhookDelivery:
        return cls(*row)


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery a deliverer holds, with what it needs to send it (the event is None when
    it is no longer in the log)."""

    delivery: WebhookDelivery
    url: str
    secret: str
    event: EventRecord | None


# -- event-type filters ------------------------------------------------------------------------
def type_matches(patterns: Iterable[str], event_type: str) -> bool:
    """Whether `event_type` is wanted by any of `patterns`: `*` (every type), `prefix.*`
    (the types under `prefix.`), or an exact type."""
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def check_event_types(patterns: Iterable[str]) -> list[str]:
    """The patterns, checked (ValueError names the first bad one) and without repeats."""
    checked: list[str] = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            raise ValueError("an event type pattern must be a non-empty string")
        if pattern != pattern.strip() or any(c.isspace() for c in pattern):
            raise ValueError(f"event type pattern {pattern!r} contains white space")
        head = pattern[:-2] if pattern.endswith(".*") else pattern
        if pattern != "*" and ("*" in head or not head or head.startswith(".")):
            raise ValueError(
                f"event type pattern {pattern!r}: use an exact type, 'prefix.*' or '*'"
            )
        if pattern not in checked:
            checked.append(pattern)
    if not checked:
        raise ValueError("give at least one event type pattern ('*' for every event)")
    return checked
