"""Webhooks out (durable, signed deliveries of the event log) and the signatures they share
with webhooks in (`routes/hooks.py`).

A node hosts one `WebhookDeliverer` per process: `WebhookDeliverer(app).start()` when it
starts, `.stop()` when it stops. Several deliverers on one store share the work.
"""

from baton.server.webhooks.deliverer import DEFAULT_RETRY, WebhookDeliverer
from baton.server.webhooks.signing import SignatureError, new_secret, signed_headers, verify

__all__ = [
    "DEFAULT_RETRY",
    "SignatureError",
    "WebhookDeliverer",
    "new_secret",
    "signed_headers",
    "verify",
]
