"""Process agents: a child process per generation, one duplex pipe to the supervisor.

The orchestrator's process runs several threads, so children are never plain forks of it:
"forkserver" (the default) forks them from a small single-threaded server started once,
with Baton already imported; "spawn" starts a fresh interpreter each time. Either way the
agent's class, its config model and its messages travel by pickle, so they must be
importable from a module (not defined inside a function), and a script that registers
process agents needs an `if __name__ == "__main__":` guard.

The child reports over the pipe (ready, heartbeat, message, error, exit); its exit code or
killing signal comes from the process sentinel. When the supervisor's end of the pipe
closes (the orchestrator died), the child stops itself and exits after a grace period.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

import psutil

from baton.agents.agent import Link
from baton.agents.instance import Instance, Launch, run_lifecycle

_contexts: dict[str, Any] = {}
_contexts_lock = threading.Lock()
_warm: set[str] = set()


def context(method: str) -> Any:
    """The multiprocessing context for `method`, the fork server preloaded with Baton."""
    with _contexts_lock:
        ctx = _contexts.get(method)
        if ctx is None:
            ctx = multiprocessing.get_context(method)
            if method == "forkserver":
                # import once in the server, not once per agent; __main__ stays first as
                # multiprocessing's default, so scripts' own agent classes resolve
                ctx.set_forkserver_preload(["__main__", "baton.agents"])
            _contexts[method] = ctx
        return ctx


def warm_up(method: str) -> None:
    """Start the fork server now rather than on the first process agent's start, so that
    its one-off cost (an interpreter importing Baton) is not paid inside the supervisor."""
    ctx = context(method)
    with _contexts_lock:
        if method in _warm:
            return
        _warm.add(method)
    if method == "forkserver":
        # start() returns once the server answers, i.e. once it has imported its preloads
        probe = ctx.Process(target=_noop, name="baton-agents-warm-up")
        probe.start()
        probe.join()


def _noop() -> None:
    pass


# -- the child side ------------------------------------------------------------------------
class ProcessLink(Link):
    def __init__(self, conn: Connection, heartbeat_every: float | None) -> None:
        super().__init__(heartbeat_every)
        self._conn = conn
        self._lock = threading.Lock()

    def notify(self, kind: str, body: Any = None) -> None:
        with self._lock:
            try:
                self._conn.send((kind, body))
            except (BrokenPipeError, ConnectionResetError, EOFError):
                pass  # the supervisor is gone; the listener is stopping us


def child_main(launch: Launch, conn: Connection) -> None:
    """The process agent's entry point (runs in the child)."""
    # Ctrl-C reaches the whole process group: only the orchestrator decides who stops
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    link = ProcessLink(conn, launch.heartbeat_every)
    threading.Thread(
        target=_listen, args=(link, conn, launch.orphan_grace), name="baton-agent-link", daemon=True
    ).start()
    result = run_lifecycle(launch, link)
    link.notify("exit", result)
    sys.exit(0 if result["ok"] else 1)


def _listen(link: ProcessLink, conn: Connection, orphan_grace: float) -> None:
    while True:
        try:
            kind, body = conn.recv()
        except (EOFError, OSError):
            break
        if kind == "stop":
            link.request_stop()
        elif kind == "message":
            link.inbox.put(body)
    # the supervisor's end closed: it is gone. Stop, and make sure we do not linger.
    link.request_stop()
    timer = threading.Timer(orphan_grace, os._exit, args=(75,))
    timer.daemon = True
    timer.start()


# -- the supervisor side -------------------------------------------------------------------
class ProcessInstance(Instance):
    execution = "process"

    def __init__(self, launch: Launch, method: str) -> None:
        super().__init__(launch)
        ctx = context(method)
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=child_main, args=(launch, child_conn), name=f"baton-agent-{launch.name}"
        )
        try:
            self.process.start()
        except BaseException:
            self.conn.close()
            raise
        finally:
            child_conn.close()  # the child holds its end; ours must close for EOF to work
        self.pid = self.process.pid
        self.sentinel = self.process.sentinel
        self._send_lock = threading.Lock()
        self.eof = False
        self._tree: dict[int, psutil.Process] = {}
        try:
            self.ps: psutil.Process | None = psutil.Process(self.pid)
        except psutil.Error:
            self.ps = None  # already gone: the sentinel will say how

    def request_stop(self) -> None:
        self._send(("stop", None))

    def deliver(self, message: Any) -> None:
        self._send(("message", message))

    def _send(self, item: tuple[str, Any]) -> None:
        with self._send_lock:
            try:
                self.conn.send(item)
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass  # it has exited; its sentinel tells the rest

    def read(self) -> list[tuple[str, Any]]:
        """Every report already sent; stops at the end of the pipe."""
        out: list[tuple[str, Any]] = []
        try:
            while self.conn.poll():
                out.append(self.conn.recv())
        except (EOFError, OSError):
            self.eof = True
        return out

    def remember_tree(self) -> None:
        """Note the agent's descendants now: once it has exited they are re-parented and
        can no longer be found from it."""
        if self.ps is None:
            return
        try:
            for child in self.ps.children(recursive=True):
                self._tree.setdefault(child.pid, child)
        except psutil.Error:
            pass

    def signal_tree(self, sig: int) -> None:
        """Send `sig` to the agent's process and every descendant, the ones seen earlier
        included (they may have been re-parented since)."""
        if self.ps is None:
            return
        self.remember_tree()
        for proc in [self.ps, *self._tree.values()]:
            try:
                proc.send_signal(sig)  # psutil refuses a pid that was reused meanwhile
            except psutil.Error:
                pass

    def kill_leftovers(self) -> None:
        """SIGKILL descendants noted while stopping it that outlived the agent."""
        for proc in self._tree.values():
            try:
                proc.kill()
            except psutil.Error:
                pass

    def exit_status(self) -> tuple[int | None, int | None]:
        """(exit code, signal) once the process has ended: one of them is None."""
        self.process.join(5)  # the sentinel fired: it has exited, reaping is immediate
        code = self.process.exitcode
        if code is not None and code < 0:
            return None, -code
        return code, None

    def close(self) -> None:
        self.conn.close()
        try:
            self.process.close()
        except ValueError:
            pass  # not yet reaped; the garbage collector will

    def is_alive(self) -> bool:
        return self.process.is_alive()

    def describe(self) -> dict[str, Any]:
        return {"generation": self.generation, "pid": self.pid}
