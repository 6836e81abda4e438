"""`Node`: one process serving an App. An agents orchestrator hosts its parts, so `baton agents
ps` and `/api/v1/agents` list them beside each other:

- `api`: the control plane (an ASGI app the caller builds, e.g. `baton.server.create_api`) on
  TCP `server.host:server.port` and on the private UNIX socket `server.socket`;
- `workers-scheduler`: the App's worker runtime, which also fires schedules and sweeps
  deadlines and dead workers' runs (one loop in the engine, so one agent);
- one agent per service handed in (`webhooks`: the outbound webhook deliverer).

The node's layer sits below the server's, so the API and the services are handed in by the
caller (`baton serve`) rather than imported here.

    node = Node(load_config("baton.yaml"), api=build_api)
    node.run()        # until SIGTERM / SIGINT; then a graceful stop; returns 0
"""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from baton.agents import AgentsError, Orchestrator, RestartPolicy, RunMode
from baton.core.errors import ConfigError
from baton.engine.app import App
from baton.node import agents
from baton.node.config import NodeConfig, apply_overrides
from baton.node.http import GRACE, HttpServer, is_loopback, route_uvicorn_logs
from baton.node.loader import AppNotLoaded, load_app, same_store, shown
from baton.observability.logging import get_logger

log = get_logger("baton.node")

DRAIN = 30.0  # seconds running steps get to finish at a stop before their runs are handed back
AGENTS_SOCKET = "agents.sock"  # the orchestrator's control socket, beside the node's socket
_RESTART = RestartPolicy(when="on-failure", max_restarts=5, window=60)


def check_exposure(config: NodeConfig) -> None:
    """Refuse to serve beyond loopback without tokens (every caller would be admin)."""
    host = config.server.host
    if not is_loopback(host) and not config.server.tokens:
        raise config.where("server", "host").error(
            ("server", "host"),
            f"{host} is not a loopback address, and without tokens every caller that reaches "
            "it would act as admin: add server.tokens (or set BATON_TOKEN), or bind 127.0.0.1",
        )


class Node:
    """A node serving `app` (default: the App `config.app` names) as configured."""

    def __init__(
        self,
        config: NodeConfig,
        app: App | None = None,
        *,
        api: Callable[[Node], Any] | None = None,
        services: Mapping[str, Callable[[App], Any]] | None = None,
        drain: float = DRAIN,
    ) -> None:
        check_exposure(config)
        self.config = config
        self.drain = drain
        self.stopping = False  # set at a stop: /readyz answers 503 from then on
        self.app = app if app is not None else _load(config)
        try:
            self._assemble(api, services or {})
        except BaseException:
            if app is None:  # ours: close the store it opened
                self.app.shutdown()
            raise

    def _assemble(
        self, api: Callable[[Node], Any] | None, services: Mapping[str, Callable[[App], Any]]
    ) -> None:
        config, app = self.config, self.app
        if config.store is not None and not same_store(app.store, config.store):
            raise config.where("store").error(
                "store",
                f"the app opened the store {app.store.location}, not "
                f"{shown(config.store)}: create it with baton.App() and no store (the "
                "node's store is then used), or leave store out of the configuration",
            )
        self.changes = apply_overrides(app, config)
        if config.flags:
            app.flags.defaults(config.flags)
        _own_worker(app, config)
        socket_path = Path(config.server.socket)
        self.orchestrator = Orchestrator(
            config=Orchestrator.Config(
                run_mode=RunMode.DAEMON,
                control_socket=socket_path.parent / AGENTS_SOCKET,
                store=app.store,
                source="baton.node",
            )
        )
        self.http: HttpServer | None = None
        self._keys: list[str] = []
        self._stopped = threading.Event()
        if api is not None:
            self.http = HttpServer(api(self), config.server.host, config.server.port, socket_path)
            listen = {"listen": f"{config.server.host}:{config.server.port}"}
            self._register(
                agents.API, agents.ApiAgent, self.http, GRACE + 5, **listen, socket=str(socket_path)
            )
        self._register(
            agents.WORKERS,
            agents.WorkersAgent,
            app,
            self.drain + 10,
            drain=self.drain,
            concurrency=app._options.concurrency,
            queues=app._options.queues,
        )
        for name, make in services.items():
            self._register(name, agents.ServiceAgent, functools.partial(make, app), None)

    def _register(
        self, name: str, cls: type, part: Any, stop_timeout: float | None, **details: Any
    ) -> None:
        key = agents.hand(part)
        self._keys.append(key)
        self.orchestrator.register_agent(
            cls,
            name,
            config={"part": key, **details},
            restart=_RESTART,
            stop_timeout=stop_timeout,
        )

    # -- running -----------------------------------------------------------------------------
    def start(self) -> None:
        """Listen (a busy port or socket fails here, before anything runs), then start every
        agent."""
        log.info("node starting", config=self.config.redacted(), overrides=self.changes)
        if self.http is not None:
            route_uvicorn_logs()
            self.http.bind()
        self.orchestrator.start()
        log.info(
            "node started",
            listen=self.http.address if self.http else None,
            socket=str(self.http.socket_path) if self.http else None,
            agents=self.orchestrator.names,
        )

    def run(self) -> int:
        """Start, serve until SIGTERM or SIGINT (or until the orchestrator is shut down from
        its control socket), then stop gracefully. Returns the exit code, 0."""
        asked = threading.Event()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, lambda signum, _: _asked(asked, signum))
        try:
            self.start()
            while not asked.wait(0.2):
                if self.orchestrator.join(0):
                    break
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def stop(self) -> None:
        """Stop gracefully: /readyz turns 503; the workers drain (running steps finish and
        checkpoint, the rest is handed back to the queue) while the API still answers; then
        the API stops accepting, the other agents stop, the socket file goes, the store
        closes."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.stopping = True
        log.info("node stopping", drain=self.drain)
        try:
            self.orchestrator.stop(agents.WORKERS, timeout=self.drain + 10)
        except AgentsError:
            pass  # not started, or the orchestrator already shut down
        self.orchestrator.shutdown()
        if self.http is not None:
            self.http.close()
        for key in self._keys:
            agents.take_back(key)
        self.app.shutdown(self.drain)
        log.info("node stopped")


def _asked(asked: threading.Event, signum: int) -> None:
    log.info("stop requested", signal=signal.Signals(signum).name)
    asked.set()


def _load(config: NodeConfig) -> App:
    if config.app is None:
        raise ConfigError(
            "no app to serve: set app: module:attribute in baton.yaml, --app or BATON_APP",
            path=config.source or "<config>",
            field="app",
        )
    try:
        return load_app(config.app, config.store)
    except AppNotLoaded as exc:
        raise config.where("app").error("app", str(exc)) from None


def _own_worker(app: App, config: NodeConfig) -> None:
    """The `workers-scheduler` agent owns the App's worker: no other call launches one, and
    `workers:` settings written in the configuration replace the App's own."""
    given = config.workers.model_fields_set
    if "concurrency" in given:
        app._options.concurrency = config.workers.concurrency
    if "queues" in given:
        app._options.queues = list(config.workers.queues or ()) or None
    app._auto_worker = False
