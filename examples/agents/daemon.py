"""A DAEMON orchestrator to drive from the shell with `baton agents ...`.

    python examples/agents/daemon.py &            # prints its control socket
    baton agents --socket .baton/agents/agents.sock ps
    baton agents status api
    baton agents stop ingest
    baton agents start ingest
    baton agents restart api
    baton agents history --name api
    baton agents stats
    baton agents shutdown

(`export BATON_AGENTS_SOCKET=...` spares the --socket option.) The orchestrator stays up
until `baton agents shutdown`, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import BaseModel, SecretStr

from baton.agents import (
    DEFAULT_SOCKET,
    Agent,
    Orchestrator,
    PeriodicAgent,
    RestartPolicy,
    RunMode,
)


class Database(Agent):
    class Config(BaseModel):
        url: str
        password: SecretStr

    def execute(self) -> None:
        self.stopping.wait()  # a long-running service: runs until stopped


class Ingest(PeriodicAgent):
    interval = 1.0

    def step(self, iteration: int) -> None:
        self.send({"batch": iteration})


class Api(Agent):
    def execute(self) -> None:
        while (request := self.receive()) is not None:  # None once a stop is asked for
            self.send({"answered": request})


def main() -> None:
    parser = argparse.ArgumentParser(description="A DAEMON orchestrator with a control socket.")
    parser.add_argument("--socket", type=Path, default=Path(DEFAULT_SOCKET))
    args = parser.parse_args()
    orchestrator = Orchestrator(
        config=Orchestrator.Config(
            run_mode=RunMode.DAEMON, control_socket=args.socket, max_workers=4
        )
    )
    orchestrator.register_agent(
        Database,
        "db",
        config={"url": "postgresql://db.internal/app", "password": "s3cret"},
        execution="process",
        restart="on-failure",
    )
    orchestrator.register_agent(Ingest, "ingest", depends_on=["db"], heartbeat_timeout=5.0)
    orchestrator.register_agent(Api, "api", depends_on=["db"], restart=RestartPolicy())
    orchestrator.start()
    print(f"control socket: {orchestrator.config.control_socket}", flush=True)
    orchestrator.simple_join()  # until `baton agents shutdown`, Ctrl-C or SIGTERM
    print("shut down", flush=True)


if __name__ == "__main__":
    main()
