"""Thread agents: a daemon thread in the orchestrator's process, reporting through a queue.

A thread cannot be killed: one that ignores a stop past the stop timeout is reported STUCK
and kept track of until it ends.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from baton.agents.agent import Link, has_on_stop
from baton.agents.instance import Instance, Launch, run_lifecycle

# what a thread agent posts to the supervisor: (instance, kind, body)
Post = Callable[[tuple[Any, ...]], None]


class ThreadLink(Link):
    def __init__(self, post: Post, instance: ThreadInstance, heartbeat_every: float | None):
        super().__init__(heartbeat_every)
        self._post = post
        self._instance = instance

    def notify(self, kind: str, body: Any = None) -> None:
        self._post((self._instance, kind, body))


class ThreadInstance(Instance):
    execution = "thread"

    def __init__(self, launch: Launch, post: Post) -> None:
        super().__init__(launch)
        self.pid = os.getpid()
        self.link = ThreadLink(post, self, launch.heartbeat_every)
        self._launch = launch
        self.thread = threading.Thread(
            target=self._main, name=f"baton-agent-{launch.name}", daemon=True
        )
        self.thread.start()
        self.native_thread_id = self.thread.native_id

    def _main(self) -> None:
        result = run_lifecycle(self._launch, self.link)
        self.link.notify("exit", result)  # always the last thing this thread posts

    def request_stop(self) -> None:
        self.link.request_stop(call_hook=False)
        agent = self.link.agent
        if agent is not None and has_on_stop(agent):
            # user code never runs on the supervisor's thread
            threading.Thread(
                target=self.link.call_on_stop, name=f"baton-stop-{self.name}", daemon=True
            ).start()

    def deliver(self, message: Any) -> None:
        self.link.inbox.put(message)

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def describe(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "pid": self.pid,
            "thread": self.thread.name,
            "native_thread_id": self.native_thread_id,
        }
