"""The node's own agents: `api` (the HTTP server), `workers-scheduler` (the App's worker
runtime) and services such as `webhooks` (anything with start() and stop()).

An agent's config is plain data, shown by `baton agents status`; the live objects it drives
(the App, the HTTP server, a service) are handed over through `PARTS`, under the key its
config names, and taken back when the node closes.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from pydantic import BaseModel, ConfigDict

from baton.agents.agent import Agent

API = "api"
# the worker runtime's dispatcher also fires due schedules and sweeps deadlines and dead
# workers' runs (when leading): one loop, so one agent, named for both
WORKERS = "workers-scheduler"

PARTS: dict[str, Any] = {}
_keys = itertools.count(1)
_lock = threading.Lock()


def hand(part: Any) -> str:
    """Make `part` reachable by the agent whose config names the returned key."""
    with _lock:
        key = f"{type(part).__name__.lower()}-{next(_keys)}"
        PARTS[key] = part
    return key


def take_back(key: str) -> None:
    with _lock:
        PARTS.pop(key, None)


class _Config(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    part: str  # the key of the live object in PARTS


class ApiAgent(Agent):
    """Serves the control plane on TCP and on the node's UNIX socket; READY once both accept."""

    Config = _Config
    auto_ready = False

    def setup(self) -> None:
        self.server = PARTS[self.config.part]

    def execute(self) -> None:
        self.server.serve(self.ready)

    def on_stop(self) -> None:
        self.server.stop()


class WorkersAgent(Agent):
    """The App's worker runtime: claims and executes runs, heartbeats, recovers the runs of
    dead workers, fires schedules. A stop drains it: running steps finish and checkpoint,
    unfinished runs go back to the queue; a start launches a new runtime."""

    Config = _Config

    def setup(self) -> None:
        self.app = PARTS[self.config.part]
        self.app.launch()

    def execute(self) -> None:
        self.stopping.wait()

    def on_close(self) -> None:
        self.app.stop_worker(self.config.drain)


class ServiceAgent(Agent):
    """Hosts an object with `start()` and `stop()` (the outbound webhook deliverer); its part
    is a function making one, called at each start (a stopped service is not reused)."""

    Config = _Config

    def setup(self) -> None:
        self.service = PARTS[self.config.part]()
        self.service.start()

    def execute(self) -> None:
        self.stopping.wait()

    def on_close(self) -> None:
        self.service.stop()
