"""Who is looking at the dashboard, and whether a POST really came from it.

Pages take the caller's token from the `Authorization` header or, for a browser, from the
`baton_token` cookie that `/login` sets (HttpOnly, SameSite=Strict, Secure over HTTPS). The
cookie is read here only: the REST API under /api/v1 never accepts it, so a cookie can never
drive the API from another site.

CSRF: every dashboard action is a POST that must carry `HX-Request: true` (htmx sends it; a
cross-site form cannot set a header, and a cross-origin script would need a CORS preflight,
which this server never grants) and, when the browser sends `Origin`, an origin of this host.
Login and logout are plain form posts: they need an `Origin` (or `Referer`) naming this host.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from fastapi import Request

from baton.core.roles import Role
from baton.server.auth import Principal
from baton.server.problems import Problem

COOKIE = "baton_token"
MAX_FORM = 64 * 1024


class DashboardError(Exception):
    """An error the dashboard shows as a message (in the flash area, or as a page)."""

    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail


class LoginNeeded(Exception):
    """No valid token: pages redirect to /login, htmx requests get HX-Redirect."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


def from_cookie(request: Request) -> bool:
    return not request.headers.get("authorization") and bool(request.cookies.get(COOKIE))


def principal(request: Request) -> Principal:
    """The caller, by header or cookie; LoginNeeded when the node wants a token it lacks."""
    found = getattr(request.state, "principal", None)
    if found is not None:
        return found
    auth = request.app.state.control.auth
    header = request.headers.get("authorization")
    if not header and request.cookies.get(COOKIE):
        header = f"Bearer {request.cookies[COOKIE]}"
    try:
        found = auth.principal(header)
    except Problem as exc:
        raise LoginNeeded(exc.detail or "") from None
    request.state.principal = found
    return found


def need(request: Request, role: Role) -> Principal:
    who = principal(request)
    if who.role < role:
        raise DashboardError(
            403, "Forbidden", f"this needs the {role} role; {who.name!r} has {who.role}"
        )
    return who


def _same_host(request: Request, url: str) -> bool:
    return bool(url) and urlsplit(url).netloc == request.headers.get("host", "")


def check_action(request: Request) -> None:
    """An action POST must come from the dashboard's own htmx (see the module's docstring)."""
    if request.headers.get("hx-request") != "true":
        raise DashboardError(
            403, "Forbidden", "dashboard actions are sent by the dashboard page (HX-Request)"
        )
    origin = request.headers.get("origin")
    if origin is not None and not _same_host(request, origin):
        raise DashboardError(403, "Forbidden", "this action came from another site")


def check_form_origin(request: Request) -> None:
    """A plain form post (login, logout) must name this host as its Origin or Referer."""
    source = request.headers.get("origin") or request.headers.get("referer") or ""
    if not _same_host(request, source):
        raise DashboardError(403, "Forbidden", "this form was not sent from this site")


async def form(request: Request) -> dict[str, str]:
    """An urlencoded form body as a dict (first value of each field)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if not body:
        return {}
    if kind != "application/x-www-form-urlencoded":
        raise DashboardError(415, "Unsupported form", "send the form urlencoded")
    if len(body) > MAX_FORM:
        raise DashboardError(413, "Form too large", f"at most {MAX_FORM} bytes")
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DashboardError(400, "Malformed form", str(exc)) from None
    return {k: v[0] for k, v in fields.items()}


def safe_next(target: str | None, base: str = "") -> str:
    """A local path to go to after login; anything else (other hosts, //x) goes home."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 33 or ord(c) == 127 for c in target)  # browsers drop tabs: "/\t/x"
    ):
        return base + "/"
    return target
