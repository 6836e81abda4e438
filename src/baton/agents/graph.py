"""The dependency graph, as pure functions: checks and start order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from baton.agents.errors import DependencyCycle, UnknownDependency


def check(graph: Mapping[str, Sequence[str]]) -> None:
    """UnknownDependency for a name nobody registered; DependencyCycle, spelled out, for a
    cycle. `graph` maps each agent to what it depends on, in registration order."""
    for agent, deps in graph.items():
        for dep in deps:
            if dep not in graph:
                raise UnknownDependency(agent, dep, graph)
    cycle = find_cycle(graph)
    if cycle:
        raise DependencyCycle(cycle)


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle as [a, b, c, a] (a depends on b ...), or None. Deterministic: the first one
    found walking agents in registration order."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph, white)
    for root in graph:
        if color[root] != white:
            continue
        path: list[str] = [root]
        color[root] = grey
        stack = [iter(graph[root])]
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                stack.pop()
                color[path.pop()] = black
                continue
            if dep not in color:
                continue  # unknown names are check()'s business
            if color[dep] == grey:
                return [*path[path.index(dep) :], dep]
            if color[dep] == white:
                color[dep] = grey
                path.append(dep)
                stack.append(iter(graph[dep]))
    return None


def start_order(graph: Mapping[str, Sequence[str]]) -> list[str]:
    """Every agent after all of its dependencies; otherwise registration order."""
    order: list[str] = []
    placed: set[str] = set()
    remaining = list(graph)
    while remaining:
        progress = False
        for name in list(remaining):
            if all(dep in placed for dep in graph[name]):
                order.append(name)
                placed.add(name)
                remaining.remove(name)
                progress = True
                break  # restart from the earliest registered, keeping registration order
        if not progress:
            raise DependencyCycle(find_cycle(graph) or remaining)
    return order


def dependents(graph: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """The reverse graph: who depends on each agent."""
    out: dict[str, list[str]] = {name: [] for name in graph}
    for agent, deps in graph.items():
        for dep in deps:
            out.setdefault(dep, []).append(agent)
    return out
