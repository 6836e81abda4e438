"""The node's HTTP listeners: the API served by uvicorn on TCP `host:port` and on the private
UNIX socket, both bound here (uvicorn's own `uds=` would make the socket mode 0666)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from baton.agents.control import bind_private
from baton.agents.errors import ControlSocketError
from baton.observability.logging import get_logger

GRACE = 10.0  # seconds open connections (streams, a slow request) get once a stop is asked for


class ListenError(Exception):
    """An address or socket the node cannot listen on; the message says which and why."""


def is_loopback(host: str) -> bool:
    """Whether `host` only reaches this machine (`localhost`, 127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything, so it counts as exposed


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class HttpServer:
    """Serves one ASGI app on a TCP socket and a UNIX socket until asked to stop. `bind()`
    takes both addresses (called before the node starts anything, so that a busy port fails
    at once); each `serve()` after the first binds them again (a restarted `api` agent)."""

    def __init__(self, asgi: Any, host: str, port: int, socket_path: str | os.PathLike[str]):
        self.asgi = asgi
        self.host = host
        self.port = port  # the bound port once bound (port 0 picks one)
        self.socket_path = Path(os.path.abspath(socket_path))
        self._sockets: list[socket.socket] = []
        self._inode: tuple[int, int] | None = None
        self._server: uvicorn.Server | None = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def bind(self) -> None:
        if self._sockets:
            return
        tcp = bind_tcp(self.host, self.port)
        self.port = tcp.getsockname()[1]
        try:
            unix = bind_private(self.socket_path)
        except ControlSocketError as exc:
            tcp.close()
            problem = exc.problem.replace("another orchestrator", "another node")
            raise ListenError(f"cannot listen on {self.socket_path}: {problem}") from None
        info = os.stat(self.socket_path)
        self._inode = (info.st_dev, info.st_ino)
        self._sockets = [tcp, unix]

    def serve(self, on_ready: Callable[[], None]) -> None:
        """Serve until `stop()`; `on_ready` is called once both listeners accept."""
        self.bind()
        sockets, self._sockets = self._sockets, []
        config = uvicorn.Config(
            self.asgi,
            lifespan="auto",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=GRACE,
            # compressing each stream message once per subscriber costs more than it saves
            ws_per_message_deflate=False,
        )
        server = self._server = uvicorn.Server(config)
        try:
            asyncio.run(self._run(server, sockets, on_ready))
        finally:
            for sock in sockets:
                sock.close()
            self._remove_socket_file()

    async def _run(
        self, server: uvicorn.Server, sockets: list[socket.socket], on_ready: Callable[[], None]
    ) -> None:
        task = asyncio.create_task(server.serve(sockets=sockets))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            on_ready()
        await task

    def stop(self) -> None:
        """Stop accepting; open requests get `GRACE` seconds to finish."""
        if self._server is not None:
            self._server.should_exit = True

    def close(self) -> None:
        """Release listeners that were bound but never served, and the socket file."""
        for sock in self._sockets:
            sock.close()
        self._sockets = []
        self._remove_socket_file()

    def _remove_socket_file(self) -> None:
        try:
            info = os.lstat(self.socket_path)
        except FileNotFoundError:
            return
        if stat.S_ISSOCK(info.st_mode) and (info.st_dev, info.st_ino) == self._inode:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)  # ours: not a socket another node bound since


class _ToStructlog(logging.Handler):
    """uvicorn logs through the standard library: pass its lines on as JSON ones."""

    def emit(self, record: logging.LogRecord) -> None:
        get_logger(record.name).log(record.levelno, record.getMessage())


def route_uvicorn_logs() -> None:
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = [_ToStructlog()]
        logger.propagate = False
