"""Inductive-invariant proofs: Init ⇒ Inv, and Inv ∧ Step_t ⇒ Inv' for every transition t.

``Inv`` is the conjunction of every state invariant (INV-1 … INV-10 and the
auxiliary AUX-1). Each (invariant, transition) pair is one Z3 query: assume
``Inv(s)`` and the step's guard, and ask for a post-state that breaks the
invariant's state clauses or its step clauses. UNSAT is PROVED; SAT is a
counterexample to induction; anything else is UNKNOWN (a failure). Proving
each conjunct under the whole conjunction proves the conjunction inductive.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import z3

from sop_verified.proofs.describe import inputs_dict, state_dict
from sop_verified.proofs.results import Counterexample, Result, Verdict
from sop_verified.spec.invariants import INVARIANTS, Clauses
from sop_verified.spec.model import TRANSITIONS, Transition, init, step
from sop_verified.spec.state import State, Term, conj

__all__ = [
    "RLIMIT",
    "SEED",
    "all_invariants",
    "all_step_checks",
    "base_checks",
    "new_solver",
    "step_checks",
    "verdict_of",
    "witness_verdict",
]

SEED = 0
"""Z3's random seed, pinned: with a resource limit the verdicts are reproducible."""
RLIMIT = 50_000_000
"""Z3's deterministic resource limit per query (a query that hits it is UNKNOWN)."""


def new_solver(rlimit: int | None = None) -> Any:
    """A Z3 solver with the pinned seed and a resource limit per query (default :data:`RLIMIT`)."""
    sol = z3.Solver()
    sol.set("random_seed", SEED)
    sol.set("rlimit", RLIMIT if rlimit is None else rlimit)
    return sol


def verdict_of(answer: Any) -> Verdict:
    """UNSAT (no counterexample) is PROVED, SAT is FAILED, anything else UNKNOWN."""
    if answer == z3.unsat:
        return "PROVED"
    if answer == z3.sat:
        return "FAILED"
    return "UNKNOWN"


def witness_verdict(answer: Any) -> Verdict:
    """For a search that should succeed: SAT is PROVED, UNSAT FAILED, anything else UNKNOWN."""
    if answer == z3.sat:
        return "PROVED"
    if answer == z3.unsat:
        return "FAILED"
    return "UNKNOWN"


def all_invariants(s: State) -> Term:
    """The conjunction of every state invariant (the inductive hypothesis)."""
    return z3.And([conj(inv.state(s)) for inv in INVARIANTS if inv.state is not None])


def _broken(clauses: Clauses, model: Any) -> tuple[str, ...]:
    return tuple(
        label for label, t in clauses if not z3.is_true(model.eval(t, model_completion=True))
    )


def _query(sol: Any, goal: Term) -> tuple[Verdict, float, Any]:
    sol.push()
    sol.add(z3.Not(goal))
    started = time.perf_counter()
    answer = sol.check()
    seconds = time.perf_counter() - started
    model = sol.model() if answer == z3.sat else None
    sol.pop()
    return verdict_of(answer), seconds, model


def base_checks() -> list[Result]:
    """Init ⇒ Inv for every invariant with a state part (one query each)."""
    s = State.fresh("s")
    sol = new_solver()
    sol.add(init(s))
    out = []
    for inv in INVARIANTS:
        if inv.state is None:
            continue
        clauses = inv.state(s)
        verdict, seconds, model = _query(sol, conj(clauses))
        cex = None
        if model is not None:
            cex = Counterexample(
                inv.id,
                inv.name,
                "init",
                "base",
                _broken(clauses, model),
                None,
                {},
                state_dict(s, model),
            )
        out.append(Result(inv.id, inv.name, "init", "base", verdict, seconds, cex))
    return out


def step_checks(
    t: Transition, mutations: frozenset[str], pre: tuple[State, Term] | None = None
) -> list[Result]:
    """Inv ∧ Step_t ⇒ Inv' for every invariant, plus a check that ``t`` is not vacuous.

    Args:
        t: the transition.
        mutations: seeded bugs to build into the model.
        pre: a pre-state and ``all_invariants`` of it, to share between
            transitions (built here when not given).

    Returns:
        One result per invariant, then the non-vacuity result (the guard is
        satisfiable together with the invariants, so the proofs say something).
    """
    if pre is None:
        s = State.fresh("s")
        pre = (s, all_invariants(s))
    s, hypothesis = pre
    st_, x = step(t, s, f"in.{t.name}", mutations)
    sol = new_solver()
    sol.add(hypothesis)
    sol.add(st_.guard)
    out = []
    for inv in INVARIANTS:
        clauses = inv.across(s, st_.post)
        verdict, seconds, model = _query(sol, conj(clauses))
        cex = None
        if model is not None:
            cex = Counterexample(
                inv.id,
                inv.name,
                t.name,
                "inductive",
                _broken(clauses, model),
                state_dict(s, model),
                inputs_dict(x.names, model),
                state_dict(st_.post, model),
            )
        out.append(Result(inv.id, inv.name, t.name, "inductive", verdict, seconds, cex))
    out.append(_enabled(sol, t))
    return out


def _enabled(sol: Any, t: Transition) -> Result:
    started = time.perf_counter()
    answer = sol.check()
    seconds = time.perf_counter() - started
    verdict = witness_verdict(answer)
    detail = "" if verdict == "PROVED" else f"`{t.name}` can never fire: its proofs are vacuous"
    return Result("SANITY", "transition_enabled", t.name, "sat", verdict, seconds, None, detail)


def all_step_checks(
    mutations: frozenset[str], names: Collection[str] | None = None
) -> list[Result]:
    """:func:`step_checks` for every transition (or those in ``names``), in model order."""
    s = State.fresh("s")
    pre = (s, all_invariants(s))
    out: list[Result] = []
    for t in TRANSITIONS:
        if names is None or t.name in names:
            out += step_checks(t, mutations, pre)
    return out
