"""A client for the control socket (what `baton agents ...` uses)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from baton.agents.errors import ControlError, ControlUnavailable


class ControlClient:
    def __init__(self, path: str | os.PathLike[str], timeout: float = 60.0) -> None:
        self.path = os.fspath(Path(path).expanduser())
        self.timeout = timeout

    def request(self, op: str, **fields: Any) -> Any:
        """Send one request; its result, or ControlError with the orchestrator's reason."""
        with self._connect() as conn, conn.makefile("rb") as reader:
            _write(conn, {"op": op, **fields})
            return _result(self._read(reader))

    def shutdown(self, timeout: float | None = None) -> Any:
        """Ask the orchestrator to shut down and wait for it to finish. The final agent
        states when it could still say them, else {"shutting_down": True}."""
        with self._connect() as conn, conn.makefile("rb") as reader:
            _write(conn, {"op": "shutdown", "timeout": timeout})
            accepted = _result(self._read(reader))
            try:
                final = self._read(reader)
            except ControlUnavailable:
                return accepted  # the process ended before the last word: that is success
            return _result(final)

    def _connect(self) -> socket.socket:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(self.timeout)
        try:
            conn.connect(self.path)
        except FileNotFoundError:
            conn.close()
            raise ControlUnavailable(
                self.path, "no such socket (is an orchestrator running with control_socket set?)"
            ) from None
        except ConnectionRefusedError:
            conn.close()
            raise ControlUnavailable(self.path, "nothing listens there (left over?)") from None
        except OSError as exc:
            conn.close()
            raise ControlUnavailable(self.path, exc.strerror or str(exc)) from None
        return conn

    def _read(self, reader: Any) -> dict[str, Any]:
        try:
            line = reader.readline()
        except TimeoutError:
            raise ControlUnavailable(self.path, f"no answer within {self.timeout:g}s") from None
        except OSError as exc:
            raise ControlUnavailable(self.path, exc.strerror or str(exc)) from None
        if not line:
            raise ControlUnavailable(self.path, "the orchestrator closed the connection")
        return json.loads(line)


def _write(conn: socket.socket, document: dict[str, Any]) -> None:
    conn.sendall(json.dumps(document).encode() + b"\n")


def _result(answer: dict[str, Any]) -> Any:
    if answer.get("ok"):
        return answer.get("result")
    error = answer.get("error") or {}
    raise ControlError(error.get("type", "Error"), error.get("message", "unknown error"))
