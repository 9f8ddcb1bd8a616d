"""Bounded model checking: INV-8's boot order, witness runs, and reachable failure traces.

- INV-8's boot order is checked for every service graph of 1 to
  :data:`~sop_verified.spec.boot_order.MAX_SERVICES` services by unrolling Kahn's
  algorithm that many steps (``bmc(k=5)``).
- Witnesses run a fixed script of transitions from an initial state and ask
  Z3 for inputs that reach a goal (an ALLOW, a write, a resume): the model is
  not so strict that nothing is ever allowed (which would make INV-1 empty).
- For a failed inductive check, :func:`reachable_trace` searches for a run
  from an initial state, up to a depth, that ends with the failing transition
  and breaks the same invariant.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import z3

from sop_verified.proofs.describe import inputs_dict, state_dict
from sop_verified.proofs.induction import new_solver, verdict_of, witness_verdict
from sop_verified.proofs.results import Counterexample, Result, Verdict
from sop_verified.spec.boot_order import MAX_SERVICES, acyclic, fresh_graph, is_boot_order, kahn
from sop_verified.spec.invariants import Invariant
from sop_verified.spec.model import TRANSITIONS, Inputs, Transition, init, step
from sop_verified.spec.state import FAILED, State, Term, conj, same
from sop_verified.spec.store import derived_tables, tables_equal

__all__ = [
    "BOOT_CHECKS",
    "TRACE_RLIMIT",
    "WITNESSES",
    "boot_order_checks",
    "reachable_trace",
    "witness_checks",
]

_BOOT_METHOD = f"bmc(k={MAX_SERVICES})"
TRACE_RLIMIT = 4_000_000
"""Z3's resource limit per depth of a trace search: deep, hopeless searches stop early."""


# -- INV-8: the boot order -----------------------------------------------------------------------
def _graph_dict(dep: Any, model: Any) -> dict[str, list[int]]:
    return {
        str(i): [j for j, e in enumerate(row) if z3.is_true(model.eval(e, model_completion=True))]
        for i, row in enumerate(dep)
    }


def _ints(model: Any, terms: Sequence[Term]) -> list[int]:
    return [int(model.eval(t, model_completion=True).as_long()) for t in terms]


BootQuery = Callable[[int, bool], tuple[Term, Callable[[Any], dict[str, Any]], Any]]


def _unique(n: int, any_ready: bool) -> tuple[Term, Callable[[Any], dict[str, Any]], Any]:
    dep = fresh_graph("g", n)
    a = [z3.Int(f"a[{k}]") for k in range(n)]
    b = [z3.Int(f"b[{k}]") for k in range(n)]
    bad = z3.And(
        is_boot_order(dep, a),
        is_boot_order(dep, b),
        z3.Or([x != y for x, y in zip(a, b, strict=True)]),
    )
    return bad, lambda m: {"order_a": _ints(m, a), "order_b": _ints(m, b)}, dep


def _kahn_meets_spec(n: int, any_ready: bool) -> tuple[Term, Callable[[Any], dict[str, Any]], Any]:
    dep = fresh_graph("g", n)
    run = kahn(dep, "kahn", any_ready=any_ready)
    bad = z3.And(
        acyclic(dep),
        run.choice_constraints,
        z3.Not(z3.And(run.completes, is_boot_order(dep, run.order))),
    )
    return (
        bad,
        lambda m: {
            "kahn_order": _ints(m, run.order),
            "completes": z3.is_true(m.eval(run.completes)),
        },
        dep,
    )


def _cycle_refused(n: int, any_ready: bool) -> tuple[Term, Callable[[Any], dict[str, Any]], Any]:
    dep = fresh_graph("g", n)
    run = kahn(dep, "kahn", any_ready=any_ready)
    bad = z3.And(z3.Not(acyclic(dep)), run.choice_constraints, run.completes)
    return bad, lambda m: {"kahn_order": _ints(m, run.order)}, dep


_BOOT_QUERIES: tuple[tuple[str, str, BootQuery], ...] = (
    ("boot_order_unique", "two orders both meet the specification", _unique),
    ("boot_order_kahn_meets_spec", "Kahn's order is not the specified one", _kahn_meets_spec),
    ("boot_order_cycle_refused", "a cyclic graph boots", _cycle_refused),
)


BOOT_CHECKS = tuple(name for name, _, _ in _BOOT_QUERIES)
"""The names of INV-8's boot-order checks (they stand where a transition would)."""


def boot_order_checks(
    inv: Invariant, mutations: frozenset[str], names: Collection[str] | None = None
) -> list[Result]:
    """INV-8's boot order over every graph of 1..MAX_SERVICES services (one result per claim)."""
    any_ready = "boot_order_any_ready" in mutations
    out = []
    for name, what, build in _BOOT_QUERIES:
        if names is not None and name not in names:
            continue
        started = time.perf_counter()
        verdict: Verdict = "PROVED"
        cex = None
        for n in range(1, MAX_SERVICES + 1):
            bad, read, dep = build(n, any_ready)
            sol = new_solver()
            sol.add(bad)
            verdict = verdict_of(sol.check())
            if verdict == "FAILED":
                m = sol.model()
                cex = Counterexample(
                    inv.id,
                    inv.name,
                    name,
                    _BOOT_METHOD,
                    (what,),
                    None,
                    {"services": n, "depends_on": _graph_dict(dep, m)},
                    read(m),
                )
            if verdict != "PROVED":
                break
        out.append(
            Result(
                inv.id, inv.name, name, _BOOT_METHOD, verdict, time.perf_counter() - started, cex
            )
        )
    return out


# -- unrolling the state machine -----------------------------------------------------------------
class _Unrolling:
    """Initial state, then steps; each step is one of the allowed transitions."""

    def __init__(self, mutations: frozenset[str]) -> None:
        self.mutations = mutations
        self.sol = new_solver(TRACE_RLIMIT)
        self.states = [State.fresh("r0")]
        self.sol.add(init(self.states[0]))
        self.steps: list[list[tuple[Transition, Inputs]]] = []

    def next_step(self, allowed: Sequence[Transition]) -> Term:
        """The constraint that state ``k+1`` follows from state ``k`` by one of ``allowed``."""
        k = len(self.steps)
        s, nxt = self.states[-1], State.fresh(f"r{k + 1}")
        sel = z3.Int(f"sel[{k + 1}]")
        options, chosen = [], []
        for i, t in enumerate(allowed):
            st_, x = step(t, s, f"r{k + 1}.{t.name}", self.mutations)
            options.append(z3.And(sel == i, st_.guard, same(nxt, st_.post)))
            chosen.append((t, x))
        self.states.append(nxt)
        self.steps.append(chosen)
        return z3.Or(options)

    def trace(self, model: Any) -> tuple[dict[str, Any], ...]:
        """The run in ``model``: the initial state, then each step with its inputs and state."""
        out = [{"step": "init", "inputs": {}, "state": state_dict(self.states[0], model)}]
        for k, chosen in enumerate(self.steps, start=1):
            sel = int(model.eval(z3.Int(f"sel[{k}]"), model_completion=True).as_long())
            t, x = chosen[sel]
            out.append(
                {
                    "step": t.name,
                    "inputs": inputs_dict(x.names, model),
                    "state": state_dict(self.states[k], model),
                }
            )
        return tuple(out)


def reachable_trace(
    inv: Invariant, transition: str, mutations: frozenset[str], max_depth: int
) -> tuple[dict[str, Any], ...]:
    """A run from an initial state ending with ``transition`` that breaks ``inv``, or ``()``.

    Args:
        inv: the invariant that failed.
        transition: the transition it failed at (the run's last step).
        mutations: the seeded bugs of the run.
        max_depth: the longest run tried.

    Returns:
        The shortest such run; empty if none up to ``max_depth`` or within
        :data:`TRACE_RLIMIT` per depth (deterministic, unlike a timeout).
    """
    last = [t for t in TRANSITIONS if t.name == transition]
    if not last:
        return ()
    u = _Unrolling(mutations)
    for _ in range(max_depth):
        u.sol.push()
        u.sol.add(u.next_step(last))
        pre, post = u.states[-2], u.states[-1]
        u.sol.add(z3.Not(conj(inv.across(pre, post))))
        answer = u.sol.check()
        if answer == z3.sat:
            return u.trace(u.sol.model())
        if answer != z3.unsat:  # the search budget is spent
            return ()
        u.sol.pop()
        u.states.pop()
        u.steps.pop()
        u.sol.add(u.next_step(TRANSITIONS))
    return ()


# -- witnesses -----------------------------------------------------------------------------------
WITNESSES: tuple[tuple[str, tuple[str, ...], Callable[[State], Term]], ...] = (
    (
        "allow_reachable",
        ("boot", "admit", "activate_policy", "decide"),
        lambda s: z3.And(s.last.made, s.last.allow),
    ),
    (
        "write_reachable",
        ("boot", "admit", "define_scope", "activate_policy", "decide", "write"),
        lambda s: s.effect_count == 1,
    ),
    (
        "resume_reachable",
        ("boot", "admit", "activate_policy", "decide", "seal", "decide", "resume"),
        lambda s: s.resumes == 1,
    ),
    (
        "revocation_cascade_reachable",
        ("admit", "attenuate", "attenuate", "revoke"),
        lambda s: z3.And(
            s.cap_count == 3, s.caps[2].parent == 1, s.caps[0].revoked, s.caps[2].revoked
        ),
    ),
    (
        "tampered_store_refused",
        ("admit", "revoke", "tamper_store", "boot"),
        lambda s: z3.And(
            s.health == FAILED,
            *s.services_up,
            z3.Not(tables_equal(s.disk[0], derived_tables(s)[0])),
        ),
    ),
    (
        "checkpoint_reachable",
        ("decide", "checkpoint", "decide", "checkpoint"),
        lambda s: z3.And(s.checkpoint_count == 2, s.checkpoints[1].size == 2),
    ),
)


def witness_checks(mutations: frozenset[str]) -> list[Result]:
    """Run each witness script; PROVED means Z3 found inputs that reach its goal."""
    by_name = {t.name: t for t in TRANSITIONS}
    out = []
    for name, script, goal in WITNESSES:
        started = time.perf_counter()
        s = State.fresh("w0")
        sol = new_solver()
        sol.add(init(s))
        for k, t in enumerate(script, start=1):  # chain the post-states: no fresh variables
            st_, _ = step(by_name[t], s, f"w{k}.{t}", mutations)
            sol.add(st_.guard)
            s = st_.post
        sol.add(goal(s))
        verdict = witness_verdict(sol.check())
        detail = "" if verdict == "PROVED" else f"`{' → '.join(script)}` cannot reach its goal"
        out.append(
            Result(
                "SANITY",
                name,
                script[-1],
                f"witness(k={len(script)})",
                verdict,
                time.perf_counter() - started,
                None,
                detail,
            )
        )
    return out
