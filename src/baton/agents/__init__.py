"""Supervised agents: long-running threads and processes with dependencies, slots, restart
policies, heartbeats, events, messages and a control socket.

    from baton.agents import Orchestrator, PeriodicAgent, RestartPolicy

    orchestrator = Orchestrator(config=Orchestrator.Config(max_workers=4))
    orchestrator.register_agent(Collector, "collector", config={"interval": 5})
    orchestrator.simple_join()
"""

from baton.agents.agent import Agent, AgentConfig
from baton.agents.client import ControlClient
from baton.agents.config import (
    DEFAULT_SOCKET,
    Dep,
    Execution,
    OnDependencyFailure,
    OrchestratorConfig,
    Restart,
    RestartPolicy,
    RunMode,
)
from baton.agents.errors import (
    AgentConfigInvalid,
    AgentNotRunning,
    AgentsError,
    ConfigInvalid,
    ControlError,
    ControlSocketError,
    ControlUnavailable,
    DependencyCycle,
    DependencyError,
    DuplicateAgent,
    InvalidAgentOption,
    NotAnAgentClass,
    OrchestratorConfigInvalid,
    OrchestratorStateError,
    RecoverableError,
    UnknownAgent,
    UnknownDependency,
)
from baton.agents.events import AgentEvent, AgentMessage, EventManager, EventType, Subscription
from baton.agents.looping import LoopingAgent, PeriodicAgent
from baton.agents.orchestrator import Orchestrator
from baton.agents.states import AgentState

__all__ = [
    "DEFAULT_SOCKET",
    "Agent",
    "AgentConfig",
    "AgentConfigInvalid",
    "AgentEvent",
    "AgentMessage",
    "AgentNotRunning",
    "AgentState",
    "AgentsError",
    "ConfigInvalid",
    "ControlClient",
    "ControlError",
    "ControlSocketError",
    "ControlUnavailable",
    "Dep",
    "DependencyCycle",
    "DependencyError",
    "DuplicateAgent",
    "EventManager",
    "EventType",
    "Execution",
    "InvalidAgentOption",
    "LoopingAgent",
    "NotAnAgentClass",
    "OnDependencyFailure",
    "Orchestrator",
    "OrchestratorConfig",
    "OrchestratorConfigInvalid",
    "OrchestratorStateError",
    "PeriodicAgent",
    "RecoverableError",
    "Restart",
    "RestartPolicy",
    "RunMode",
    "Subscription",
    "UnknownAgent",
    "UnknownDependency",
]
