"""Inbound webhooks: `POST /hooks/{name}` starts the hook's workflow with the JSON body.

A hook (from the node's `webhooks.inbound` configuration: `workflow`, `secret`, optional
`version`) needs no bearer token: the Standard Webhooks signature, made with the hook's
secret, is the credential. The run's idempotency key is `hook:{name}:{webhook-id}`, so a
sender that delivers the same message again (same `webhook-id`) starts the run once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from baton.server.context import Control, control
from baton.server.problems import Problem
from baton.server.webhooks.signing import SignatureError, verify

router = APIRouter(tags=["hooks"])
Ctl = Annotated[Control, Depends(control)]

_DESCRIPTION = """Start the workflow of inbound webhook `name` with the JSON body as its input.

**No bearer token**: the request is authenticated by its
[Standard Webhooks](https://www.standardwebhooks.com) signature, made with the hook's secret
(`webhook-id`, `webhook-timestamp` within five minutes of the node's clock,
`webhook-signature`). A missing, stale or wrong signature is answered 401; an unknown hook
404; a body that is not JSON 400. The run's idempotency key is `hook:{name}:{webhook-id}`:
the same message sent again starts no second run (answered with the first run and
`created: false`).
"""


class HookAccepted(BaseModel):
    run_id: str
    hook: str
    workflow: str
    created: bool


def _field(hook: Any, name: str) -> Any:
    value = hook.get(name) if isinstance(hook, Mapping) else getattr(hook, name, None)
    reveal = getattr(value, "get_secret_value", None)  # a pydantic SecretStr
    return reveal() if callable(reveal) else value


@router.post(
    "/hooks/{name}",
    status_code=202,
    response_model=HookAccepted,
    description=_DESCRIPTION,
    openapi_extra={
        "security": [],
        "x-baton-role": "none (the webhook signature authenticates)",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"description": "Any JSON value."}}},
        },
    },
    responses={
        400: {"description": "The body is not JSON."},
        401: {"description": "Missing, stale or wrong signature."},
        404: {"description": "No inbound hook with this name."},
    },
)
async def receive_hook(name: str, request: Request, response: Response, ctl: Ctl) -> HookAccepted:
    hook = ctl.hooks.get(name)
    if hook is None:
        raise Problem(
            404, "Hook not found", f"there is no inbound hook {name!r}", slug="hook-not-found"
        )
    workflow, secret = _field(hook, "workflow"), _field(hook, "secret")
    if not workflow or not secret:
        raise Problem(
            500,
            "Hook misconfigured",
            f"inbound hook {name!r} needs a workflow and a secret",
            slug="hook-misconfigured",
        )
    body = await request.body()
    try:
        verify(secret, body, request.headers)
    except SignatureError as exc:
        raise Problem(401, "Invalid signature", str(exc), slug="invalid-signature") from None
    except ValueError as exc:
        raise Problem(500, "Hook misconfigured", str(exc), slug="hook-misconfigured") from None
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise Problem(
            400, "Malformed JSON", f"the body is not valid JSON: {exc}", slug="malformed-json"
        ) from None
    message_id = request.headers["webhook-id"]
    handle = await run_in_threadpool(
        lambda: ctl.app.start(
            workflow,
            payload,
            idempotency_key=f"hook:{name}:{message_id}",
            version=_field(hook, "version"),
        )
    )
    response.headers["Location"] = f"/api/v1/runs/{handle.id}"
    return HookAccepted(run_id=handle.id, hook=name, workflow=str(workflow), created=handle.created)
