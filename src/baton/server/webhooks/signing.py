"""Standard Webhooks signatures (https://www.standardwebhooks.com): sign what a node sends,
verify what it receives. The maths is the `standardwebhooks` library's.

A secret is `whsec_` followed by base64 (the key's bytes). A message is signed over
`{webhook-id}.{webhook-timestamp}.{body}` with HMAC-SHA256; the headers carry the id, the
Unix time in seconds and `v1,<base64 signature>`. A receiver refuses timestamps more than five
minutes away from its clock, which bounds replays.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks import Webhook, WebhookVerificationError

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


class SignatureError(Exception):
    """A received webhook's signature headers are missing, malformed, stale or wrong."""


def new_secret() -> str:
    """A fresh secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def check_secret(secret: str) -> str:
    """`secret` if it is `whsec_` + base64 of at least 24 bytes; ValueError otherwise."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"a webhook secret is {SECRET_PREFIX!r} followed by base64") from None
    if len(key) < 24:
        raise ValueError("a webhook secret needs at least 24 bytes of key (32 are usual)")
    return secret


def signed_headers(secret: str, msg_id: str, body: str, at: float | None = None) -> dict[str, str]:
    """The Standard Webhooks headers for sending `body` as message `msg_id` at Unix time `at`
    (now by default)."""
    stamp = int(time.time() if at is None else at)
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, UTC), body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature,
    }


def verify(secret: str, body: bytes, headers: Mapping[str, str]) -> None:
    """Check a received message's signature headers; SignatureError says what is wrong.
    ValueError: `secret` itself is unusable (a configuration problem, not the sender's)."""
    try:
        hook = Webhook(secret)
    except Exception as exc:
        raise ValueError(f"the webhook secret is not usable: {exc}") from None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError("the body is not UTF-8, so its signature cannot match") from None
    wanted = {k.lower(): v for k, v in headers.items() if k.lower().startswith("webhook-")}
    try:
        hook.verify(text, wanted, json_parse=False)
    except WebhookVerificationError as exc:
        raise SignatureError(str(exc) or "no matching signature") from None
    except (ValueError, binascii.Error):  # a malformed signature header
        raise SignatureError("malformed webhook-signature header") from None
