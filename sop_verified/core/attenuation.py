"""Attenuation checks (INV-10): a derived capability never grants more than its parent.

Actions must be a subset of the parent's and the validity window inside the
parent's (plain checks). For resources, glob-language inclusion is proved
with Z3.

A child capability's resource glob ``c`` is within its parent's globs
``p1 .. pn`` iff no well-formed resource path is in ``c`` and in none of the
``pi``, i.e. iff ``InRe(x, c) and not InRe(x, p1 | .. | pn) and
well_formed(x)`` is UNSAT. SAT yields a counterexample path; ``unknown``
(resource limit, timeout, solver error) is not a proof, so the caller refuses
(fail-closed). The solver runs with a pinned seed and a deterministic
resource limit (:data:`RLIMIT`), so verdicts do not depend on machine load.
Results are cached by ``(child, sorted parents)``; they are pure.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import z3

from sop_verified.core.capclaims import Capability
from sop_verified.core.contracts import ensure, require
from sop_verified.core.obligations import Verdict
from sop_verified.errors import AttenuationError, InputError
from sop_verified.tools.paths import Glob, check_path, z3_well_formed_path

__all__ = [
    "RLIMIT",
    "InclusionResult",
    "check_actions_and_window",
    "check_attenuation",
    "prove_glob_within",
]

RLIMIT = 10_000_000
"""Z3 resource limit per inclusion check (a few seconds at worst on this machine)."""
TIMEOUT_MS = 30_000
"""Wall-clock backstop only; the resource limit is what normally stops the solver."""
_SEED = 0
_CACHE_MAX = 4096

# Z3's Python API shares one global context; Glob.z3_regex builds in it, so
# every use here is serialised.
_LOCK = threading.Lock()
_CACHE: dict[tuple[str, tuple[str, ...]], InclusionResult] = {}


@dataclass(frozen=True, slots=True)
class InclusionResult:
    """The verdict (the proof gate's vocabulary; never REJECTED), the counterexample path when
    refuted, and why when unknown."""

    verdict: Verdict
    counterexample: str | None = None
    reason: str = ""


@require(lambda parents: len(parents) > 0, "there is at least one parent glob")
@ensure(
    lambda result: (result.verdict is Verdict.REFUTED) == (result.counterexample is not None),
    "a counterexample comes with, and only with, a refutation",
)
def prove_glob_within(child: str, parents: tuple[str, ...]) -> InclusionResult:
    """Decide whether every path matched by glob ``child`` is matched by one of ``parents``.

    Args:
        child: a glob pattern (see :mod:`sop_verified.tools.paths`).
        parents: the parent's glob patterns (non-empty).

    Returns:
        PROVED, REFUTED with a counterexample path, or UNKNOWN with a reason.

    Raises:
        InputError: a pattern is not a well-formed glob.
    """
    key = (child, tuple(sorted(set(parents))))
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    child_glob = Glob(child, where="resources")
    parent_globs = [Glob(p, where="parent resources") for p in key[1]]
    with _LOCK:
        if child in key[1]:
            result = InclusionResult(Verdict.PROVED, reason="the child glob is a parent glob")
        else:
            result = _solve(child_glob, parent_globs)
        if len(_CACHE) >= _CACHE_MAX:
            del _CACHE[next(iter(_CACHE))]
        _CACHE[key] = result
    return result


def _solve(child: Glob, parents: list[Glob]) -> InclusionResult:
    try:
        x = z3.String("x")
        union = (
            parents[0].z3_regex()
            if len(parents) == 1
            else z3.Union(*[p.z3_regex() for p in parents])
        )
        solver = z3.Solver()
        solver.set("random_seed", _SEED)
        solver.set("rlimit", RLIMIT)
        solver.set("timeout", TIMEOUT_MS)
        solver.add(z3.InRe(x, child.z3_regex()), z3.Not(z3.InRe(x, union)), z3_well_formed_path(x))
        answer = solver.check()
        if answer == z3.unsat:
            return InclusionResult(Verdict.PROVED)
        if answer == z3.sat:
            return _refutation(child, parents, solver.model().eval(x, model_completion=True))
        return InclusionResult(Verdict.UNKNOWN, reason=f"solver: {solver.reason_unknown()}")
    except z3.Z3Exception as exc:  # fail-closed: no proof
        return InclusionResult(Verdict.UNKNOWN, reason=f"solver error: {exc}")


def _refutation(child: Glob, parents: list[Glob], value: Any) -> InclusionResult:
    """Confirm the solver's witness with the Python matcher before reporting it."""
    path = str(value.as_string())
    try:
        check_path(path, where="counterexample")
    except InputError:
        well_formed = False
    else:
        well_formed = True
    if well_formed and child.matches(path) and not any(p.matches(path) for p in parents):
        return InclusionResult(Verdict.REFUTED, counterexample=path)
    # The solver and the matcher disagree, or the witness is beyond the path
    # limits: not a proof either way, so it stays a refusal.
    return InclusionResult(
        Verdict.UNKNOWN,
        reason=f"solver witness `{path[:80]}` is not confirmed by the path matcher",
    )


@require(lambda actions: len(actions) > 0, "at least one action")
def check_actions_and_window(
    parent: Capability, actions: frozenset[str], not_before: int, expires: int
) -> None:
    """Refuse child actions or a window wider than ``parent``'s (INV-10).

    Args:
        parent: the parent capability.
        actions: the child's actions.
        not_before: the child's first valid second.
        expires: the child's expiry.

    Raises:
        AttenuationError: code ``actions_wider`` or ``window_wider``.
    """
    extra = sorted(actions - parent.actions)
    if extra:  # spec: INV-10 — actions only narrow
        raise AttenuationError(
            f"child actions `{', '.join(extra)}` are not granted by parent `{parent.id}` "
            f"(it grants `{', '.join(sorted(parent.actions))}`)",
            code="actions_wider",
            capability_id=parent.id,
        )
    if not (parent.not_before <= not_before and expires <= parent.expires):  # spec: INV-10
        raise AttenuationError(
            f"child window `{not_before}`..`{expires}` is not inside parent `{parent.id}` "
            f"window `{parent.not_before}`..`{parent.expires}`",
            code="window_wider",
            capability_id=parent.id,
        )


@require(lambda resources: len(resources) > 0, "at least one resource glob")
def check_attenuation(
    parent: Capability,
    actions: frozenset[str],
    resources: tuple[str, ...],
    not_before: int,
    expires: int,
) -> None:
    """Refuse any child wider than ``parent`` (INV-10); resources are proved with Z3.

    Args:
        parent: the parent capability.
        actions: the child's actions.
        resources: the child's resource globs.
        not_before: the child's first valid second.
        expires: the child's expiry.

    Raises:
        AttenuationError: code ``actions_wider``, ``window_wider``,
            ``resources_wider`` (with the counterexample path) or
            ``resources_unproved`` (the solver gave no proof).
    """
    check_actions_and_window(parent, actions, not_before, expires)
    for glob in resources:
        result = prove_glob_within(glob, parent.resources)
        if result.verdict is Verdict.REFUTED:  # spec: INV-10 — resources only narrow
            raise AttenuationError(
                f"child resource `{glob}` is wider than parent `{parent.id}` resources "
                f"`{', '.join(parent.resources)}`: it matches `{result.counterexample}`",
                code="resources_wider",
                capability_id=parent.id,
                counterexample=result.counterexample,
            )
        if result.verdict is not Verdict.PROVED:  # spec: INV-10, INV-2 — no proof
            raise AttenuationError(
                f"child resource `{glob}` could not be proved within parent `{parent.id}` "
                f"resources ({result.reason})",
                code="resources_unproved",
                capability_id=parent.id,
            )
