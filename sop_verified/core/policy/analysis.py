"""Z3 analyses of policy sets, with counterexample requests (governance in governance.py).

Each analysis asks Z3 for a well-formed request that breaks a property; UNSAT
means the property holds for every request ``parse_request`` accepts, SAT
yields a counterexample decoded into a request dict and replayed through the
fast evaluator (``confirmed``), UNKNOWN (timeout, resource limit) fails
closed: a governance check that cannot be decided is a failed check.

- :func:`always_denies`: no request is allowed.
- :func:`implies`: every request A allows, B allows; :func:`equivalent`: both ways.

spec/POLICY_LANGUAGE.md section 7 states the analyses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import z3

from sop_verified.core.contracts import ensure, require
from sop_verified.core.policy.encode import PolicyEncoding
from sop_verified.core.policy.evaluator import PolicySet
from sop_verified.core.policy.request_vars import RequestVars
from sop_verified.core.request import Permission, parse_request
from sop_verified.errors import InputError

__all__ = [
    "DEFAULT_TIMEOUT_MS",
    "AnalysisResult",
    "always_denies",
    "equivalent",
    "find_request",
    "implies",
    "new_solver",
    "replay_confirms",
    "search",
]

DEFAULT_TIMEOUT_MS: Final = 30_000
_RLIMIT: Final = 200_000_000
"""A deterministic work bound (z3 resource units); the timeout is only a backstop."""

Replay = Callable[[dict[str, Any]], bool]
"""Whether a decoded counterexample really breaks the property when run by the evaluator."""


@dataclass(frozen=True)
class AnalysisResult:
    """The verdict of one analysis.

    ``holds`` is True (proved for all well-formed requests), False (refuted,
    with a counterexample) or None (unknown: treat as not holding).
    """

    name: str
    holds: bool | None
    counterexample: dict[str, Any] | None = None
    confirmed: bool | None = None
    detail: str = ""
    seconds: float = 0.0

    @ensure(lambda result: "holds" in result, "a JSON-ready verdict")
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form.

        Returns:
            ``{"name", "holds", "counterexample", "confirmed", "detail", "seconds"}``.
        """
        return {
            "name": self.name,
            "holds": self.holds,
            "counterexample": self.counterexample,
            "confirmed": self.confirmed,
            "detail": self.detail,
            "seconds": round(self.seconds, 4),
        }


@require(lambda timeout_ms: timeout_ms > 0, "a positive timeout")
def new_solver(timeout_ms: int = DEFAULT_TIMEOUT_MS) -> Any:
    """A Z3 solver with a pinned seed, a deterministic resource limit and a timeout backstop.

    Args:
        timeout_ms: wall-clock backstop in milliseconds.

    Returns:
        A fresh solver.
    """
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.set("rlimit", _RLIMIT)
    solver.set("random_seed", 0)
    return solver


def replay_confirms(replay: Replay, cex: dict[str, Any]) -> bool:
    """Run a decoded counterexample through ``replay``; an invalid request is unconfirmed.

    Args:
        replay: the property check with the fast evaluator.
        cex: the decoded counterexample.

    Returns:
        True when the evaluator agrees the property fails on ``cex``.
    """
    try:
        return replay(cex)
    except InputError:  # e.g. a set the solver made larger than a request may carry
        return False


@require(lambda timeout_ms: timeout_ms > 0, "a positive timeout")
@ensure(
    lambda result: result.holds is not False or result.counterexample is not None,
    "a refutation carries its counterexample",
)
def search(
    name: str,
    *,
    vars_: RequestVars,
    violation: Any,
    universe: frozenset[str],
    replay: Replay,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
) -> AnalysisResult:
    """Look for a well-formed request satisfying ``violation``.

    Args:
        name: the analysis name, for the result.
        vars_: the request variables ``violation`` is stated over.
        violation: a Z3 Bool: the property fails for this request.
        universe: the string literals of the policies involved (for decoding).
        replay: re-checks a decoded counterexample with the fast evaluator.
        timeout_ms: the solver's wall-clock backstop.

    Returns:
        holds=True if no such request exists, False with a counterexample if one
        does, None if Z3 could not decide.
    """
    start = time.perf_counter()
    solver = new_solver(timeout_ms)
    solver.add(violation)
    verdict, cex = find_request(solver, vars_, universe)
    seconds = time.perf_counter() - start
    if verdict == z3.unsat:
        return AnalysisResult(name, True, seconds=seconds)
    if cex is not None:
        return AnalysisResult(name, False, cex, replay_confirms(replay, cex), seconds=seconds)
    return AnalysisResult(
        name, None, detail=f"z3 answered unknown: {solver.reason_unknown()}", seconds=seconds
    )


def _is_request(cex: dict[str, Any]) -> bool:
    try:
        parse_request(cex)
    except InputError:
        return False
    return True


@ensure(lambda result: result[0] != z3.sat or result[1] is not None, "sat yields a request")
def find_request(
    solver: Any, vars_: RequestVars, universe: frozenset[str], *, first: bool = True
) -> tuple[Any, dict[str, Any] | None]:
    """Check ``solver`` for a well-formed request, refining lazily.

    On the ``first`` call the solver gets the cheap
    :meth:`RequestVars.well_formed_core`; UNSAT there is UNSAT for well-formed
    requests too. A model whose decoded request ``parse_request`` refuses (a
    ``..`` segment, an overlong path) makes the solver take
    :meth:`RequestVars.well_formed_bounds` and check again. Both constraints
    stay on the solver, so later calls (``first=False``) reuse them.

    Args:
        solver: a solver holding the violation formula (over ``vars_``).
        vars_: the request variables.
        universe: the string literals of the policies involved.
        first: whether this solver has not been given the core constraint yet.

    Returns:
        (z3 verdict, decoded counterexample or None).
    """
    if first:
        solver.add(vars_.well_formed_core())
    verdict = solver.check()
    if verdict != z3.sat:
        return verdict, None
    cex = vars_.decode(solver.model(), universe)
    if _is_request(cex):
        return verdict, cex
    solver.add(vars_.well_formed_bounds())
    verdict = solver.check()
    if verdict != z3.sat:
        return verdict, None
    return verdict, vars_.decode(solver.model(), universe)


def _allows(s: PolicySet) -> Replay:
    return lambda cex: s.evaluate(parse_request(cex)).effect is Permission.ALLOW


@ensure(lambda result: result.name == "always_denies", "names itself")
def always_denies(s: PolicySet, *, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> AnalysisResult:
    """Whether ``s`` denies every well-formed request.

    Args:
        s: the policy set.
        timeout_ms: the solver's backstop.

    Returns:
        holds=True if nothing is allowed; else a request ``s`` allows.
    """
    enc = PolicyEncoding(s.document)
    return search(
        "always_denies",
        vars_=enc.vars,
        violation=enc.allow,
        universe=s.document.string_literals(),
        replay=_allows(s),
        timeout_ms=timeout_ms,
    )


@ensure(lambda result: result.name == "implies", "names itself")
def implies(a: PolicySet, b: PolicySet, *, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> AnalysisResult:
    """Whether every request ``a`` allows, ``b`` allows too.

    Args:
        a: the set whose permissions must be covered.
        b: the covering set.
        timeout_ms: the solver's backstop.

    Returns:
        holds=True if ``allow_a => allow_b``; else a request ``a`` allows and ``b`` denies.
    """
    shared = RequestVars()
    ea, eb = PolicyEncoding(a.document, shared), PolicyEncoding(b.document, shared)
    universe = a.document.string_literals() | b.document.string_literals()
    allows_a, allows_b = _allows(a), _allows(b)
    return search(
        "implies",
        vars_=shared,
        violation=z3.And(ea.allow, z3.Not(eb.allow)),
        universe=universe,
        replay=lambda cex: allows_a(cex) and not allows_b(cex),
        timeout_ms=timeout_ms,
    )


@ensure(lambda result: result.name == "equivalent", "names itself")
def equivalent(
    a: PolicySet, b: PolicySet, *, timeout_ms: int = DEFAULT_TIMEOUT_MS
) -> AnalysisResult:
    """Whether ``a`` and ``b`` allow exactly the same requests.

    Args:
        a: one set.
        b: the other.
        timeout_ms: the solver's backstop, per direction.

    Returns:
        holds=True if both imply each other; else the first counterexample found,
        with ``detail`` saying which set allows it.
    """
    forward = implies(a, b, timeout_ms=timeout_ms)
    if forward.holds is not True:
        detail = forward.detail or "the first set allows it, the second denies it"
        return AnalysisResult(
            "equivalent",
            forward.holds,
            forward.counterexample,
            forward.confirmed,
            detail,
            forward.seconds,
        )
    backward = implies(b, a, timeout_ms=timeout_ms)
    detail = backward.detail or (
        "" if backward.holds else "the second set allows it, the first denies it"
    )
    return AnalysisResult(
        "equivalent",
        backward.holds,
        backward.counterexample,
        backward.confirmed,
        detail,
        forward.seconds + backward.seconds,
    )
