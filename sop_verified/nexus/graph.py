"""The declared service graph and its one boot order (INV-8).

The boot order is a pure function of the graph: Kahn's topological sort with
ties broken by service name, so the same graph always boots the same way.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from sop_verified.errors import ConfigError

__all__ = ["boot_order"]


def boot_order(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Return the deterministic boot order of ``graph`` (service -> its dependencies).

    Args:
        graph: every service and the services it depends on.

    Returns:
        Services in topological order, dependencies first, ties by name.

    Raises:
        ConfigError: a dependency is not declared, or the graph has a cycle.
    """
    deps = {name: sorted(set(ds)) for name, ds in graph.items()}
    for name, ds in deps.items():
        for d in ds:
            if d not in deps:
                raise ConfigError(f"service `{name}` depends on undeclared service `{d}`")
    waiting = {name: len(ds) for name, ds in deps.items()}
    dependants: dict[str, list[str]] = {name: [] for name in deps}
    for name, ds in deps.items():
        for d in ds:
            dependants[d].append(name)
    ready = [name for name, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)  # spec: INV-8 — ties broken by name
        order.append(name)
        for nxt in dependants[name]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                heapq.heappush(ready, nxt)
    if len(order) != len(deps):
        stuck = sorted(n for n in deps if n not in order)
        raise ConfigError(f"the service graph has a cycle among `{', '.join(stuck)}`")
    return order
