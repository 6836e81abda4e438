"""The states an agent moves through, and which of them count as live, ended or failed."""

from __future__ import annotations

from enum import StrEnum


class AgentState(StrEnum):
    REGISTERED = "REGISTERED"  # the orchestrator has not started yet
    WAITING = "WAITING"  # for its dependencies
    QUEUED = "QUEUED"  # for a free slot (max_workers)
    STARTING = "STARTING"  # spawned, setup running, not READY yet
    RUNNING = "RUNNING"  # READY
    STOPPING = "STOPPING"  # asked to stop, escalating if it does not
    BACKOFF = "BACKOFF"  # ended; restarting after a pause
    COMPLETED = "COMPLETED"  # execute() returned
    FAILED = "FAILED"  # ended with an error (or a bad config), not restarted
    STOPPED = "STOPPED"  # stopped on request, or because a dependency failed
    STUCK = "STUCK"  # a thread that ignored a stop past the stop timeout
    SKIPPED = "SKIPPED"  # never started: a dependency failed or can never be satisfied


# holding a slot: a thread or process exists and is ours to stop
ACTIVE = frozenset({AgentState.STARTING, AgentState.RUNNING, AgentState.STOPPING})
# something will still happen without anyone asking
PENDING = frozenset({AgentState.WAITING, AgentState.QUEUED, AgentState.BACKOFF})
ENDED = frozenset(
    {
        AgentState.REGISTERED,
        AgentState.COMPLETED,
        AgentState.FAILED,
        AgentState.STOPPED,
        AgentState.STUCK,
        AgentState.SKIPPED,
    }
)
# a dependency in one of these will never become ready by itself
DEPENDENCY_FAILED = frozenset({AgentState.FAILED, AgentState.SKIPPED})
