"""Outbound webhook subscriptions and their deliveries.

A subscription's secret is shown once, in the answer that creates it; every other answer
shows it redacted. Changing subscriptions needs the admin role, redelivering the operator
role, reading the viewer role.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from baton.core.ids import new_id
from baton.core.roles import Role
from baton.server.auth import guard
from baton.server.context import Control, control
from baton.server.problems import Problem
from baton.server.views import Text, when
from baton.server.webhooks.signing import check_secret, new_secret
from baton.store.webhooks import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookSubscription,
    check_event_types,
)

router = APIRouter(prefix="/api/v1", tags=["webhooks"])
Ctl = Annotated[Control, Depends(control)]
REDACTED = "whsec_***"
STATUSES = [str(s) for s in DeliveryStatus]


def check_url(url: str) -> str:
    """`url` if it is an absolute http or https URL with a host; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("a webhook URL must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("a webhook URL needs a host")
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise ValueError("the webhook URL's port is not a number from 0 to 65535") from None
    if any(c.isspace() for c in url):
        raise ValueError("a webhook URL may not contain white space")
    return url


Url = Annotated[Text, Field(min_length=1, max_length=2000)]
EventTypes = Annotated[list[Text], Field(min_length=1, max_length=100)]


class CreateWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url
    event_types: EventTypes = Field(
        default_factory=lambda: ["*"],
        description="Exact types, 'prefix.*' (every type under prefix.) or '*' (every event).",
    )
    description: Text | None = Field(default=None, max_length=1000)
    secret: Text | None = Field(
        default=None,
        max_length=200,
        description="'whsec_' + base64 of 24 bytes or more; one is made up when not given.",
    )
    active: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        return check_event_types(value)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return None if value is None else check_secret(value)


class UpdateWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url | None = None
    event_types: EventTypes | None = None
    description: Text | None = Field(default=None, max_length=1000)
    active: bool | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_event_types(value)


class Webhook(BaseModel):
    id: str
    url: str
    event_types: list[str]
    description: str | None = None
    active: bool
    secret: str = Field(description="Redacted, but in the answer that creates the webhook.")
    created_at: str | None = None
    updated_at: str | None = None


class Delivery(BaseModel):
    id: str
    subscription_id: str
    event_id: str
    event_type: str
    event_seq: int
    status: str
    attempts: int = Field(description="Attempts begun since it was created or redelivered.")
    in_flight: bool = Field(description="A deliverer holds it (an attempt may be under way).")
    next_attempt_at: str | None = None
    last_status: int | None = Field(default=None, description="The last answer's HTTP status.")
    last_error: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    delivered_at: str | None = None


class DeliveryPage(BaseModel):
    items: list[Delivery]
    next_cursor: str | None = None


def webhook_view(sub: WebhookSubscription, *, reveal: bool = False) -> Webhook:
    return Webhook(
        id=sub.id,
        url=sub.url,
        event_types=sub.event_types,
        description=sub.description,
        active=sub.active,
        secret=sub.secret if reveal else REDACTED,
        created_at=when(sub.created_at),
        updated_at=when(sub.updated_at),
    )


def delivery_view(d: WebhookDelivery, now: float) -> Delivery:
    held = d.owner is not None and (d.lease_expires_at or 0) > now
    pending = d.status == DeliveryStatus.PENDING
    return Delivery(
        id=d.id,
        subscription_id=d.subscription_id,
        event_id=d.event_id,
        event_type=d.event_type,
        event_seq=d.event_seq,
        status=d.status,
        attempts=d.attempts,
        in_flight=pending and held,
        next_attempt_at=when(d.available_at) if pending and not held else None,
        last_status=d.last_status,
        last_error=d.last_error,
        created_at=when(d.created_at),
        updated_at=when(d.updated_at),
        delivered_at=when(d.delivered_at),
    )


def _not_found(subscription_id: str) -> Problem:
    return Problem(
        404,
        "Webhook not found",
        f"there is no webhook subscription {subscription_id!r}",
        slug="webhook-not-found",
    )


def _must_get(ctl: Control, subscription_id: str) -> WebhookSubscription:
    sub = ctl.app.store.get_webhook(subscription_id)
    if sub is None:
        raise _not_found(subscription_id)
    return sub


@router.post("/webhooks", status_code=201, response_model=Webhook, **guard(Role.ADMIN))
def create_webhook(body: CreateWebhook, ctl: Ctl, response: Response) -> Webhook:
    """Subscribe a URL to the events logged from now on. The answer carries the signing
    secret: the only time it is shown."""
    now = ctl.app.clock.now()
    sub = WebhookSubscription(
        id=new_id(),
        url=body.url,
        event_types=body.event_types,
        secret=body.secret or new_secret(),
        description=body.description,
        active=body.active,
        created_at=now,
        updated_at=now,
    )
    ctl.app.store.create_webhook(sub).result()
    response.headers["Location"] = f"/api/v1/webhooks/{sub.id}"
    return webhook_view(sub, reveal=True)


@router.get("/webhooks", response_model=list[Webhook], **guard(Role.VIEWER))
def list_webhooks(ctl: Ctl) -> list[Webhook]:
    return [webhook_view(s) for s in ctl.app.store.list_webhooks()]


@router.get("/webhooks/{subscription_id}", response_model=Webhook, **guard(Role.VIEWER))
def get_webhook(subscription_id: str, ctl: Ctl) -> Webhook:
    return webhook_view(_must_get(ctl, subscription_id))


@router.patch("/webhooks/{subscription_id}", response_model=Webhook, **guard(Role.ADMIN))
def update_webhook(subscription_id: str, body: UpdateWebhook, ctl: Ctl) -> Webhook:
    """Change the fields given. A webhook made active again receives the events logged from
    then on (not those logged while it was inactive)."""
    given: dict[str, Any] = body.model_dump(exclude_unset=True)
    if "url" in given and given["url"] is None:
        raise ValueError("url cannot be null")
    if "event_types" in given and given["event_types"] is None:
        raise ValueError("event_types cannot be null")
    if "active" in given and given["active"] is None:
        raise ValueError("active cannot be null")
    sub = ctl.app.store.update_webhook(subscription_id, ctl.app.clock.now(), **given).result()
    if sub is None:
        raise _not_found(subscription_id)
    return webhook_view(sub)


@router.delete("/webhooks/{subscription_id}", status_code=204, **guard(Role.ADMIN))
def delete_webhook(subscription_id: str, ctl: Ctl) -> Response:
    """Remove the webhook and every delivery it has (pending ones are not sent)."""
    if not ctl.app.store.delete_webhook(subscription_id).result():
        raise _not_found(subscription_id)
    return Response(status_code=204)


@router.get(
    "/webhooks/{subscription_id}/deliveries", response_model=DeliveryPage, **guard(Role.VIEWER)
)
def list_deliveries(
    subscription_id: str,
    ctl: Ctl,
    status: Annotated[list[str] | None, Query(description="Repeat or comma-separate.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> DeliveryPage:
    """Newest first; pass `next_cursor` back as `cursor` for the next page."""
    _must_get(ctl, subscription_id)
    statuses = [s.strip().upper() for v in status or () for s in v.split(",") if s.strip()]
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown:
        raise ValueError(f"unknown status {unknown[0]!r}; one of {', '.join(STATUSES)}")
    found = ctl.app.store.list_webhook_deliveries(subscription_id, statuses, limit + 1, cursor)
    more = len(found) > limit
    found = found[:limit]
    now = ctl.app.clock.now()
    return DeliveryPage(
        items=[delivery_view(d, now) for d in found],
        next_cursor=found[-1].id if more else None,
    )


@router.get("/webhook-deliveries/{delivery_id}", response_model=Delivery, **guard(Role.VIEWER))
def get_delivery(delivery_id: str, ctl: Ctl) -> Delivery:
    found = ctl.app.store.get_webhook_delivery(delivery_id)
    if found is None:
        raise _delivery_not_found(delivery_id)
    return delivery_view(found, ctl.app.clock.now())


@router.post(
    "/webhook-deliveries/{delivery_id}/redeliver",
    response_model=Delivery,
    **guard(Role.OPERATOR),
)
def redeliver(delivery_id: str, ctl: Ctl) -> Delivery:
    """Send a FAILED (or DELIVERED) delivery again, from its first attempt: it is PENDING and
    due now, with the same `webhook-id`. A PENDING delivery is answered 409."""
    now = ctl.app.clock.now()
    found, changed = ctl.app.store.redeliver_webhook(delivery_id, now).result()
    if found is None:
        raise _delivery_not_found(delivery_id)
    if not changed:
        raise Problem(
            409,
            "Delivery pending",
            f"delivery {delivery_id} is {found.status}: it will be sent (again) anyway",
            slug="delivery-pending",
        )
    deliverer = ctl.extras.get("webhook_deliverer")
    if deliverer is not None:
        deliverer.wake()
    return delivery_view(found, now)


def _delivery_not_found(delivery_id: str) -> Problem:
    return Problem(
        404,
        "Delivery not found",
        f"there is no webhook delivery {delivery_id!r}",
        slug="webhook-delivery-not-found",
    )
