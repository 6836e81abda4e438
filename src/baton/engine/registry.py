"""Registered workflows and steps, by name and version."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from baton.core.errors import DefinitionError, UnknownWorkflow
from baton.core.retry import Retry


@dataclass(slots=True)
class WorkflowDef:
    name: str
    version: str
    fn: Callable[..., Any]
    is_async: bool
    timeout: float | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)


@dataclass(slots=True)
class StepDef:
    name: str
    fn: Callable[..., Any]
    is_async: bool
    retry: Retry | None = None  # None: an error goes straight back to the workflow
    timeout: float | None = None
    # the step that undoes this one (a name or a step function), resolved when first needed
    compensate: str | Callable[..., Any] | None = None


class Registry:
    def __init__(self) -> None:
        self._workflows: dict[tuple[str, str], WorkflowDef] = {}
        self._latest: dict[str, WorkflowDef] = {}
        self._steps: dict[str, StepDef] = {}

    def add_workflow(self, wf: WorkflowDef) -> None:
        if not wf.name:
            raise DefinitionError("a workflow needs a non-empty name")
        if wf.key in self._workflows:
            raise DefinitionError(
                f"workflow {wf.name!r} version {wf.version!r} is already registered "
                f"(by {_where(self._workflows[wf.key].fn)}); give the new one another "
                f"name or version"
            )
        self._workflows[wf.key] = wf
        self._latest[wf.name] = wf

    def add_step(self, step: StepDef) -> None:
        if step.name in self._steps:
            raise DefinitionError(
                f"step {step.name!r} is already registered "
                f"(by {_where(self._steps[step.name].fn)}); pass name= to tell them apart"
            )
        self._steps[step.name] = step

    def workflow(self, name: str, version: str | None = None) -> WorkflowDef:
        wf = self._latest.get(name) if version is None else self._workflows.get((name, version))
        if wf is None:
            raise UnknownWorkflow(name, version, sorted({n for n, _ in self._workflows}))
        return wf

    def find(self, name: str, version: str) -> WorkflowDef | None:
        return self._workflows.get((name, version))

    def served(self) -> list[tuple[str, str]]:
        return sorted(self._workflows)

    def find_step(self, name: str) -> StepDef | None:
        return self._steps.get(name)

    def all_steps(self) -> list[StepDef]:
        return list(self._steps.values())


def is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn)


def _where(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    if code is None:
        return repr(fn)
    return f"{fn.__qualname__} at {code.co_filename}:{code.co_firstlineno}"
