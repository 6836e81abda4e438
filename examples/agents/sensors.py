"""Three virtual sensors from one class with three configs, and a fourth whose config
fails validation: it is reported (AGENT_ERROR, with the field and the agent's name) and
never starts, while the other three run.

    python examples/agents/sensors.py

Each sensor runs in a process of its own (`execution="process"`): the class lives at
module level so the child process can import it, and the script keeps its work under
`if __name__ == "__main__":`.
"""

from __future__ import annotations

import math
import random

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from baton.agents import EventType, Orchestrator, PeriodicAgent


class VirtualSensor(PeriodicAgent):
    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored
        kind: str
        unit: str
        base: float
        amplitude: float = Field(1.0, ge=0)
        interval: float = Field(0.1, gt=0)
        limit: int = 5
        api_token: SecretStr = SecretStr("")  # shown as *** by `baton agents status`

    def step(self, iteration: int) -> None:
        cfg = self.config
        wave = math.sin(iteration / 2) * cfg.amplitude
        value = round(cfg.base + wave + random.uniform(-0.1, 0.1), 2)
        self.send({"kind": cfg.kind, "value": value, "unit": cfg.unit})


SENSORS = {
    "thermometer": {"kind": "temperature", "unit": "C", "base": 21.0, "amplitude": 2.0},
    "hygrometer": {"kind": "humidity", "unit": "%", "base": 45.0, "amplitude": 5.0},
    "barometer": {"kind": "pressure", "unit": "hPa", "base": 1013.0, "interval": 0.05},
    # negative amplitude and an unknown key: both reported, by path, for this agent only
    "broken-gauge": {"kind": "wind", "unit": "m/s", "base": 3.0, "amplitude": -1, "colour": "red"},
}


def main() -> None:
    orchestrator = Orchestrator(config=Orchestrator.Config(max_workers=4))
    for name, config in SENSORS.items():
        orchestrator.register_agent(VirtualSensor, name, config=config, execution="process")
    orchestrator.on_message(lambda m: print(f"{m.agent:12} {m.body['value']:>8} {m.body['unit']}"))
    orchestrator.subscribe(
        lambda e: print(f"{e.agent}: {e.data['message']}"), types=EventType.AGENT_ERROR
    )
    for name, state in orchestrator.simple_join().items():
        print(f"{name:12} {state}")


if __name__ == "__main__":
    main()
