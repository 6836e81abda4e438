"""A periodic collector: samples this machine's load every 0.2 s, five times, and reports.

    python examples/agents/collector.py

The orchestrator runs in STOP_ON_EMPTY mode: it exits once the collector has taken its
five samples (`limit`). The collector's ticks sit on a fixed grid, so the time a sample
takes does not push the next one back.
"""

from __future__ import annotations

import os

import psutil
from pydantic import BaseModel, Field

from baton.agents import EventType, Orchestrator, PeriodicAgent


class LoadCollector(PeriodicAgent):
    class Config(BaseModel):
        interval: float = Field(0.2, gt=0)
        limit: int = 5

    def setup(self) -> None:
        self.process = psutil.Process(os.getpid())

    def step(self, iteration: int) -> None:
        self.send(
            {
                "sample": iteration,
                "load_1m": round(os.getloadavg()[0], 2),
                "cpu_percent": psutil.cpu_percent(interval=None),
                "rss_mib": round(self.process.memory_info().rss / 2**20, 1),
            }
        )


def main() -> None:
    orchestrator = Orchestrator(config=Orchestrator.Config(max_workers=1))
    orchestrator.register_agent(LoadCollector, "collector")
    orchestrator.on_message(lambda m: print(f"{m.agent}: {m.body}"))
    states = orchestrator.simple_join()
    ended = orchestrator.events.history(types=[EventType.AGENT_TERMINATED])[-1]
    print(f"collector {states['collector']} after {ended.data['uptime']:.2f}s")


if __name__ == "__main__":
    main()
