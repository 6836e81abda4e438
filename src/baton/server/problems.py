"""One error model for the whole API: RFC 9457 problem details (application/problem+json)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from baton.agents import errors as agent_errors
from baton.core import errors
from baton.observability.logging import get_logger

MEDIA_TYPE = "application/problem+json"
log = get_logger("baton.server")

# typed errors a caller can cause, by the most specific class first
_STATUS: tuple[tuple[type[BaseException], int, str], ...] = (
    (errors.RunNotFound, 404, "run-not-found"),
    (errors.ApprovalNotFound, 404, "approval-not-found"),
    (errors.ScheduleNotFound, 404, "schedule-not-found"),
    (errors.StepNotFound, 422, "step-not-found"),
    (errors.UnknownWorkflow, 422, "unknown-workflow"),
    (errors.ApprovalClosed, 409, "approval-closed"),
    (errors.NotAnAssignee, 403, "not-an-assignee"),
    (errors.InvalidState, 409, "invalid-state"),
    (errors.SerializationError, 422, "not-serializable"),
    (errors.ScheduleError, 422, "invalid-schedule"),
    (errors.InvalidConcurrency, 422, "invalid-concurrency"),
    (errors.StoreUnavailable, 503, "store-unavailable"),
    (agent_errors.UnknownAgent, 404, "agent-not-found"),
    (agent_errors.OrchestratorStateError, 409, "invalid-state"),
    (agent_errors.AgentNotRunning, 409, "invalid-state"),
    (LookupError, 404, "not-found"),
    (ValueError, 422, "invalid-value"),
    (TypeError, 422, "invalid-value"),
    (errors.BatonError, 400, "bad-request"),
)


class Problem(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra
        self.headers = headers
        self.slug = extra.pop("slug", None) or title.lower().replace(" ", "-")


def problem_type(slug: str) -> str:
    return f"urn:baton:problem:{slug}"


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    slug: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": problem_type(slug) if slug else "about:blank",
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def json_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """A validation location as a JSON path: ('body', 'items', 0, 'x') → '$.items[0].x'."""
    parts = list(loc)
    where = parts.pop(0) if parts and parts[0] in ("body", "query", "path", "header") else "body"
    path = "$" if where == "body" else where
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def status_of(exc: BaseException) -> tuple[int, str]:
    for cls, status, slug in _STATUS:
        if isinstance(exc, cls):
            return status, slug
    return 500, "internal"


_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details (application/problem+json). A problem may carry "
    "more members: `errors` for invalid input, `required_role` for a 403, `error` for a typed "
    "Baton error.",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "description": "urn:baton:problem:<slug>, or about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "The request's path."},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["path", "message"],
                "properties": {
                    "path": {"type": "string", "description": "$.a.b[0] in the body; query.x"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def _document(doc: dict[str, Any]) -> dict[str, Any]:
    """Say in the OpenAPI document what every operation answers on error: a problem (FastAPI
    documents its own 422 shape, which this API never sends). Idempotent."""
    doc.setdefault("components", {}).setdefault("schemas", {})["Problem"] = _PROBLEM_SCHEMA
    content = {MEDIA_TYPE: {"schema": _PROBLEM_REF}}
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if "422" in responses:
                responses["422"] = {"description": "Invalid input", "content": content}
            responses.setdefault(
                "default", {"description": "An error, as problem details", "content": content}
            )
    schemas = doc["components"]["schemas"]
    if '"#/components/schemas/HTTPValidationError"' not in json.dumps(doc.get("paths", {})):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return doc


def install(api: FastAPI) -> None:
    """Answer every error, expected or not, with a problem document; never with a traceback."""
    build = api.openapi
    api.openapi = lambda: _document(build())  # type: ignore[method-assign]

    @api.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.title,
            exc.detail,
            exc.slug,
            request.url.path,
            headers=exc.headers,
            **exc.extra,
        )

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        found = exc.errors()
        malformed = [e for e in found if e.get("type") == "json_invalid"]
        if malformed:
            ctx = malformed[0].get("ctx") or {}
            return problem_response(
                400,
                "Malformed JSON",
                f"the body is not valid JSON: {ctx.get('error', 'cannot parse')}",
                "malformed-json",
                request.url.path,
            )
        listed = [{"path": json_path(e.get("loc", ())), "message": e.get("msg", "")} for e in found]
        detail = "; ".join(f"{e['path']}: {e['message']}" for e in listed[:5])
        return problem_response(
            422, "Invalid request", detail, "invalid-request", request.url.path, errors=listed
        )

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {400: "Bad request", 404: "Not found", 405: "Method not allowed"}.get(
            exc.status_code, "Error"
        )
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem_response(
            exc.status_code, title, detail, None, request.url.path, headers=exc.headers
        )

    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        status, slug = status_of(exc)
        if status >= 500 and slug == "internal":
            log.error("request failed", path=request.url.path, exc_info=exc)
            return problem_response(
                500, "Internal error", "the node logged the cause", slug, request.url.path
            )
        return problem_response(
            status, type(exc).__name__, str(exc), slug, request.url.path, error=type(exc).__name__
        )

    # the expected kinds are answered inside the app (the connection lives on); Exception is
    # the last resort, answered by the outermost middleware
    for kind in (errors.BatonError, LookupError, ValueError, TypeError, Exception):
        api.add_exception_handler(kind, _unexpected)  # type: ignore[arg-type]
