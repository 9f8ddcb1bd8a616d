"""INV-8: the model's boot order is the code's (`nexus/graph.py: boot_order`), graph by graph."""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterator

import pytest
import z3

from sop_verified.errors import ConfigError
from sop_verified.nexus.graph import boot_order
from sop_verified.spec.boot_order import (
    acyclic,
    fresh_graph,
    is_boot_order,
    kahn,
    reference_boot_order,
)
from sop_verified.spec.state import SERVICE_DEPS, SERVICES

Deps = tuple[tuple[int, ...], ...]


def _graphs(n: int, *, self_loops: bool) -> Iterator[Deps]:
    pairs = [(i, j) for i in range(n) for j in range(n) if self_loops or i != j]
    for bits in itertools.product((False, True), repeat=len(pairs)):
        deps: list[list[int]] = [[] for _ in range(n)]
        for (i, j), on in zip(pairs, bits, strict=True):
            if on:
                deps[i].append(j)
        yield tuple(tuple(d) for d in deps)


def _small_graphs() -> Iterator[Deps]:
    for n in range(1, 4):
        yield from _graphs(n, self_loops=True)
    yield from _graphs(4, self_loops=False)


def _reference(deps: Deps) -> tuple[int, ...] | None:
    try:
        return reference_boot_order(deps)
    except ValueError:
        return None


def _code(deps: Deps) -> tuple[int, ...] | None:
    names = string.ascii_lowercase
    try:
        order = boot_order({names[i]: [names[j] for j in d] for i, d in enumerate(deps)})
    except ConfigError:
        return None
    return tuple(names.index(n) for n in order)


def test_code_boot_order_equals_the_model_on_every_small_graph() -> None:
    checked = 0
    for deps in _small_graphs():
        assert _code(deps) == _reference(deps), deps
        checked += 1
    assert checked == 2 + 16 + 512 + 4096


def _concrete(
    dep: tuple[tuple[z3.BoolRef, ...], ...], deps: Deps
) -> list[tuple[z3.BoolRef, z3.BoolRef]]:
    n = len(dep)
    return [(dep[i][j], z3.BoolVal(j in deps[i])) for i in range(n) for j in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_z3_unrolling_of_kahn_equals_the_reference(n: int) -> None:
    dep = fresh_graph("t", n)
    run = kahn(dep, "t")
    spec_ok = acyclic(dep)
    for deps in _graphs(n, self_loops=True):
        sub = _concrete(dep, deps)
        order = [z3.simplify(z3.substitute(o, *sub)).as_long() for o in run.order]
        completes = z3.is_true(z3.simplify(z3.substitute(run.completes, *sub)))
        is_dag = z3.is_true(z3.simplify(z3.substitute(spec_ok, *sub)))
        expected = _reference(deps)
        assert is_dag == (expected is not None), deps
        assert completes == (expected is not None), deps
        if expected is not None:
            assert tuple(order) == expected, deps


def test_spec_predicate_accepts_the_reference_order_only() -> None:
    deps: Deps = ((), (0,), (), (1, 2))
    dep = fresh_graph("p", 4)
    sub = _concrete(dep, deps)
    expected = reference_boot_order(deps)
    for perm in itertools.permutations(range(4)):
        holds = z3.simplify(z3.substitute(is_boot_order(dep, [z3.IntVal(k) for k in perm]), *sub))
        assert z3.is_true(holds) == (perm == expected), perm


def test_state_machine_boots_in_the_reference_order() -> None:
    order = reference_boot_order(SERVICE_DEPS)
    assert [SERVICES[i] for i in order] == ["keys", "log", "policy"]
    assert _code(SERVICE_DEPS) == order
