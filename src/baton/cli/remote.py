"""Talking to a running node over its UNIX socket: the REST API of `baton serve`.

The socket is `--socket`, else BATON_SOCKET, else `.baton/run/node.sock`; the bearer token, if
the node has tokens, is BATON_TOKEN. A socket file nobody answers on counts as no node.
"""

from __future__ import annotations

import os
import stat
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_SOCKET = ".baton/run/node.sock"
TOKEN_ENV = "BATON_TOKEN"
PROBE_TIMEOUT = 2.0  # seconds a node gets to answer /healthz before it counts as absent


class NodeProblem(Exception):
    """The node answered with a problem document (or another error status)."""

    def __init__(self, status: int, title: str, detail: str | None) -> None:
        self.status, self.title, self.detail = status, title, detail
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = f"{self.title}: {self.detail}" if self.detail else self.title
        if self.status == 401:
            return f"{text} (the token is missing or wrong: set {TOKEN_ENV} to one of its tokens)"
        if self.status == 403:
            return f"{text} (set {TOKEN_ENV} to a token with that role)"
        return text


class NodeUnavailable(Exception):
    """The node stopped answering in the middle of a command."""


def segment(value: str) -> str:
    """A path segment (a run id, an approval or schedule name), escaped."""
    return quote(value, safe="")


class NodeClient:
    """The node's REST API over its UNIX socket."""

    def __init__(self, path: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.path = path
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=path),
            base_url="http://node",
            headers=headers,
            timeout=timeout,
        )

    @classmethod
    def connect(cls, path: str, token: str | None = None) -> NodeClient | None:
        """A client when a node answers on `path`, else None (no file, or nobody listening)."""
        try:
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                return None
        except OSError:
            return None
        client = cls(path, token)
        try:
            answer = client._http.get("/healthz", timeout=PROBE_TIMEOUT)
        except httpx.HTTPError:
            client.close()
            return None
        if answer.status_code != 200:
            client.close()
            return None
        return client

    def get(self, path: str, **params: Any) -> Any:
        wanted = {k: v for k, v in params.items() if v is not None}
        return self._call("GET", path, params=wanted)

    def post(self, path: str, body: Any = None) -> Any:
        return self._call("POST", path, json=body)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **options: Any) -> Any:
        try:
            answer = self._http.request(method, f"/api/v1{path}", **options)
        except httpx.HTTPError as exc:
            raise NodeUnavailable(f"the node on {self.path} did not answer: {exc}") from None
        if answer.is_success:
            return answer.json()
        raise _problem(answer)


def _problem(answer: httpx.Response) -> NodeProblem:
    try:
        doc = answer.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        title = answer.reason_phrase or "Error"
        text = answer.text.strip()
        return NodeProblem(answer.status_code, title, text if text and text != title else None)
    title = str(doc.get("title") or answer.reason_phrase or "Error")
    detail = doc.get("detail")
    return NodeProblem(answer.status_code, title, str(detail) if detail else None)
