"""INV-8's boot order: the declarative specification and Kahn's algorithm, in Z3.

Services are named by their rank in name order (service ``0`` sorts first), so
"ties broken by name" is "the smallest ready index". A graph is a matrix of
Z3 booleans ``dep[i][j]``: service ``i`` depends on service ``j``.

- :func:`is_boot_order` is the specification: a permutation in which every
  service comes after its dependencies and each position holds the smallest
  service whose dependencies are all already started.
- :func:`kahn` unrolls the algorithm of ``sop_verified/nexus/graph.py``
  (``boot_order``, a heap-based Kahn sort) for ``n`` steps: bounded model
  checking of the boot loop.
- :func:`reference_boot_order` is the same algorithm in plain Python, used by
  the state machine and by the tests that hold the code to the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import z3

from sop_verified.spec.state import Term

__all__ = [
    "MAX_SERVICES",
    "Graph",
    "KahnRun",
    "acyclic",
    "is_boot_order",
    "kahn",
    "reference_boot_order",
]

MAX_SERVICES = 5
"""The largest graph the bounded check covers (every graph of 1..5 services)."""

Graph = tuple[tuple[Term, ...], ...]


def reference_boot_order(deps: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """Kahn's order of ``deps`` (``deps[i]``: what ``i`` depends on), smallest ready first.

    Args:
        deps: the dependencies of each service ``0..n-1``.

    Returns:
        The boot order.

    Raises:
        ValueError: the graph has a cycle (the code raises ConfigError there).
    """
    n = len(deps)
    started: list[int] = []
    while len(started) < n:
        ready = [i for i in range(n) if i not in started and all(d in started for d in deps[i])]
        if not ready:
            raise ValueError(
                f"the service graph has a cycle among `{sorted(set(range(n)) - set(started))}`"
            )
        started.append(min(ready))
    return tuple(started)


def fresh_graph(prefix: str, n: int) -> Graph:
    """A graph of ``n`` services with unconstrained edges (self-loops included)."""
    return tuple(tuple(z3.Bool(f"{prefix}.dep[{i}][{j}]") for j in range(n)) for i in range(n))


def acyclic(dep: Graph) -> Term:
    """No service depends on itself, directly or transitively (closure by squaring)."""
    n = len(dep)
    reach = [list(row) for row in dep]
    hops = 1
    while hops < n:
        reach = [
            [
                z3.Or(reach[i][j], *[z3.And(reach[i][k], reach[k][j]) for k in range(n)])
                for j in range(n)
            ]
            for i in range(n)
        ]
        hops *= 2
    return z3.And([z3.Not(reach[i][i]) for i in range(n)])


def _dep_of(dep: Graph, i: Term, j: int) -> Term:
    """``dep[i][j]`` for a symbolic ``i``."""
    return z3.Or([z3.And(i == k, dep[k][j]) for k in range(len(dep))])


def is_boot_order(dep: Graph, order: Sequence[Term]) -> Term:
    """``order`` is the boot order the specification allows for ``dep``."""
    n = len(dep)
    clauses = [z3.And(o >= 0, o < n) for o in order]
    if n > 1:
        clauses.append(z3.Distinct(*order))

    def before(k: int, j: int) -> Term:
        return z3.Or([order[t] == j for t in range(k)]) if k else z3.BoolVal(False)

    def ready(k: int, i: int) -> Term:
        return z3.And(
            z3.Not(before(k, i)), *[z3.Implies(dep[i][j], before(k, j)) for j in range(n)]
        )

    for k in range(n):
        deps_first = z3.And([z3.Implies(_dep_of(dep, order[k], j), before(k, j)) for j in range(n)])
        smallest = z3.And([z3.Implies(ready(k, i), order[k] <= i) for i in range(n)])
        clauses += [deps_first, smallest]
    return z3.And(clauses)


@dataclass(frozen=True)
class KahnRun:
    """One unrolled run: the order picked and whether every step found a ready service."""

    order: tuple[Term, ...]
    completes: Term
    choice_constraints: Term


def kahn(dep: Graph, prefix: str, *, any_ready: bool = False) -> KahnRun:
    """Unroll Kahn's algorithm on ``dep`` for ``len(dep)`` steps.

    Args:
        dep: the graph.
        prefix: names the choice variables of the ``any_ready`` variant.
        any_ready: the seeded bug: pick any ready service instead of the smallest.

    Returns:
        The unrolled run.
    """
    n = len(dep)
    started = [z3.BoolVal(False)] * n
    order, ok, choices = [], [], []
    for k in range(n):
        ready = [
            z3.And(z3.Not(started[i]), *[z3.Implies(dep[i][j], started[j]) for j in range(n)])
            for i in range(n)
        ]
        if any_ready:
            pick = z3.Int(f"{prefix}.choice[{k}]")
            choices.append(
                z3.Or(
                    [z3.And(pick == i, ready[i]) for i in range(n)]
                    + [z3.And(pick == -1, z3.Not(z3.Or(ready)))]
                )
            )
        else:
            pick = z3.IntVal(-1)
            for i in range(n - 1, -1, -1):  # the smallest ready index wins
                pick = z3.If(ready[i], z3.IntVal(i), pick)
        order.append(pick)
        ok.append(pick >= 0)
        started = [z3.Or(started[i], pick == i) for i in range(n)]
    return KahnRun(tuple(order), z3.And(ok), z3.And(choices) if choices else z3.BoolVal(True))
