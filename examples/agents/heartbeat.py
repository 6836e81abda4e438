"""A heartbeat-monitored agent: it works (and beats) for a while, then hangs. The
supervisor notices the missing heartbeat, stops it (cooperatively, then SIGTERM), and its
restart policy starts a fresh one, twice, before giving up.

    python examples/agents/heartbeat.py
"""

from __future__ import annotations

import time

from baton.agents import Agent, EventType, Orchestrator, RestartPolicy


class Worker(Agent):
    def execute(self) -> None:
        for _ in range(5):
            self.heartbeat()  # "still alive"
            time.sleep(0.05)
        while True:  # a bug: stuck in a loop that neither beats nor checks self.stopping
            time.sleep(0.1)


def show(event) -> None:  # type: ignore[no-untyped-def]
    details = {k: v for k, v in event.data.items() if k in ("generation", "type", "signal_name")}
    print(f"{event.type.name:18} {details}")


def main() -> None:
    orchestrator = Orchestrator(config=Orchestrator.Config(stop_timeout=0.3, kill_timeout=0.3))
    orchestrator.register_agent(
        Worker,
        "worker",
        execution="process",
        heartbeat_timeout=0.3,
        restart=RestartPolicy(max_restarts=2, initial_delay=0.1),
    )
    orchestrator.subscribe(show, types=[t for t in EventType if t != EventType.AGENT_HEARTBEAT])
    print(orchestrator.simple_join())


if __name__ == "__main__":
    main()
