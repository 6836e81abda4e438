"""The control socket: JSON lines over a UNIX socket only its owner can reach.

The socket is bound with umask 0o177, so it is born mode 0600 (no moment with wider
permissions), in a directory that must be mode 0700 and owned by us (created so when
missing). Each connecting peer's uid is checked as well where the platform tells it.

Protocol: one JSON object per line, `{"op": "ps"}` or `{"op": "stop", "name": "db"}`; one
answer per request, `{"ok": true, "result": ...}` or `{"ok": false, "error": {"type": ...,
"message": ...}}`. A bad line gets an error answer; the connection and the orchestrator
carry on. `shutdown` answers twice: once when accepted, once (if the process is still
there to say it) when every agent has stopped.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import socket
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from baton.agents.errors import ControlSocketError
from baton.core.errors import BatonError
from baton.observability.logging import get_logger

log = get_logger("baton.agents")

MAX_LINE = 1 << 20  # a request larger than this is refused and its connection closed
_umask_lock = threading.Lock()  # the umask is per process: one bind at a time changes it
_SUN_PATH_MAX = 107  # bytes in sockaddr_un.sun_path, less the terminating NUL (Linux)

Handler = Callable[[dict[str, Any]], Any]


class BadRequest(BatonError, ValueError):
    """A control request that is not a JSON object with a known "op" and its fields."""


def bind_private(path: Path) -> socket.socket:
    """A listening UNIX socket at `path`, mode 0600, in a 0700 directory we own."""
    path = Path(os.path.abspath(path))
    if len(os.fsencode(path)) > _SUN_PATH_MAX:
        raise ControlSocketError(
            str(path), f"the path is longer than the {_SUN_PATH_MAX} bytes a UNIX socket allows"
        )
    directory = path.parent
    if not directory.exists():
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # makedirs' mode passes through the umask
    info = os.stat(directory)
    if info.st_uid != os.getuid():
        raise ControlSocketError(
            str(path), f"its directory {directory} belongs to uid {info.st_uid}, not to us"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ControlSocketError(
            str(path),
            f"its directory {directory} is mode {stat.S_IMODE(info.st_mode):04o}; it must be "
            "0700 so that no one else can reach the socket (choose a private directory)",
        )
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _umask_lock:
            previous = os.umask(0o177)
            try:
                sock.bind(os.fspath(path))
            finally:
                os.umask(previous)
        sock.listen(16)
    except OSError as exc:
        sock.close()
        raise ControlSocketError(str(path), f"cannot bind: {exc.strerror or exc}") from exc
    return sock


def _clear_stale(path: Path) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlSocketError(str(path), "a file that is not a socket is in the way")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(os.fspath(path))
    except OSError:
        os.unlink(path)  # nobody listens: left behind by an orchestrator that died
        return
    finally:
        probe.close()
    raise ControlSocketError(str(path), "another orchestrator is listening on it")


def _peer_uid(conn: socket.socket) -> int | None:
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class ControlServer:
    """Accepts connections on a thread; each connection gets a thread of its own (a `stop`
    may wait for an agent; others should not wait behind it)."""

    def __init__(self, path: Path, handle: Handler, on_shutdown: Callable[[dict], Any]) -> None:
        self.path = Path(os.path.abspath(path))
        self._handle = handle
        self._on_shutdown = on_shutdown
        self._sock = bind_private(self.path)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._accept, name="baton-agents-control")
        self._thread.daemon = True
        self._closed = False

    def serve(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.write(self._wake_w, b"\0")
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._sock.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _accept(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._closed:
                for key, _ in selector.select():
                    if key.fileobj is not self._sock:
                        return
                    try:
                        conn, _ = self._sock.accept()
                    except OSError:
                        continue
                    threading.Thread(
                        target=self._serve_connection,
                        args=(conn,),
                        name="baton-agents-control-conn",
                        daemon=True,
                    ).start()

    def _serve_connection(self, conn: socket.socket) -> None:
        with conn:
            uid = _peer_uid(conn)
            if uid is not None and uid not in (os.getuid(), 0):
                _send(conn, _error("PermissionDenied", f"uid {uid} may not control this"))
                return
            for line in _lines(conn):
                if line is None:
                    _send(conn, _error("BadRequest", f"request longer than {MAX_LINE} bytes"))
                    return
                request, problem = _parse(line)
                if problem is not None:
                    _send(conn, problem)
                    continue
                assert request is not None
                if request["op"] == "shutdown":
                    self._shutdown(conn, request)
                    return
                if not _send(conn, self._answer(request)):
                    return

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            return {"ok": True, "result": self._handle(request)}
        except BatonError as exc:
            return _error(type(exc).__name__, str(exc))
        except Exception as exc:  # a bug must not take the orchestrator down
            log.exception("control request failed", op=request.get("op"))
            return _error("InternalError", f"{type(exc).__name__}: {exc}")

    def _shutdown(self, conn: socket.socket, request: dict[str, Any]) -> None:
        _send(conn, {"ok": True, "result": {"shutting_down": True}})
        try:
            result = self._on_shutdown(request)
        except Exception as exc:
            _send(conn, _error(type(exc).__name__, str(exc)))
            return
        _send(conn, {"ok": True, "result": result})


def _lines(conn: socket.socket):  # type: ignore[no-untyped-def]
    """Lines from the connection; None once for a line over MAX_LINE."""
    buffer = b""
    while True:
        try:
            chunk = conn.recv(65536)
        except OSError:
            return
        if not chunk:
            if buffer.strip():
                yield buffer
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
        if len(buffer) > MAX_LINE:
            yield None
            return


def _parse(line: bytes) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    try:
        request = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, _error("BadRequest", f"not JSON: {exc}")
    if not isinstance(request, dict):
        return None, _error("BadRequest", 'a request is a JSON object with an "op" field')
    if not isinstance(request.get("op"), str):
        return None, _error("BadRequest", 'the request has no "op" (a string)')
    return request, None


def _send(conn: socket.socket, document: dict[str, Any]) -> bool:
    try:
        conn.sendall(json.dumps(document, default=str).encode() + b"\n")
        return True
    except OSError as exc:
        if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
            log.warning("control answer not sent", error=repr(exc))
        return False


def _error(type_name: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"type": type_name, "message": message}}
