"""Run every check of the SOP model: the Python API behind ``sop spec check``.

Example::

    report = run_all()
    assert report.ok, report.failures
"""

from __future__ import annotations

import dataclasses
import time

import z3

from sop_verified.errors import InputError
from sop_verified.proofs.bmc import BOOT_CHECKS, boot_order_checks, reachable_trace, witness_checks
from sop_verified.proofs.induction import all_step_checks, base_checks
from sop_verified.proofs.results import CheckReport, Result
from sop_verified.spec import state as st
from sop_verified.spec.invariants import INVARIANTS
from sop_verified.spec.model import TRANSITIONS, check_mutations

__all__ = ["TRACE_DEPTH", "UNIVERSE", "run_all"]

TRACE_DEPTH = 8
"""How deep :func:`run_all` searches for a reachable run that shows a failure."""

UNIVERSE: dict[str, int] = {
    "capabilities": st.N_CAPS,
    "policies": st.N_POLICIES,
    "obligation digests": st.N_OBLIGATIONS,
    "log entries": st.N_LOG,
    "checkpoints": st.N_CHECKPOINTS,
    "effects": st.N_EFFECTS,
    "snapshots": st.N_SNAPSHOTS,
    "scopes": st.N_SCOPES,
    "protocols": st.N_PROTOCOLS,
    "effectful actions": st.N_ACTS,
    "services (state machine)": st.N_SERVICES,
}
"""The bounded universe the proofs range over (spec/INVARIANTS.md says why)."""


def run_all(
    mutations: frozenset[str] = frozenset(),
    *,
    trace_depth: int = TRACE_DEPTH,
    witnesses: bool = True,
    focus: frozenset[str] | None = None,
) -> CheckReport:
    """Discharge every invariant and return the report.

    Runs, in order: the base case of every state invariant (``base``); every
    (invariant, transition) inductive step (``inductive``) with a non-vacuity
    check per transition; INV-8's boot-order checks (``bmc(k=5)``); the
    witness runs (``witness(k=N)``). For the first failure of each invariant,
    a run from an initial state that reaches it is searched up to
    ``trace_depth`` steps and attached to the counterexample.

    Args:
        mutations: names of seeded bugs to build into the model (see
            ``sop_verified.spec.model.MUTATIONS``); empty for the real model.
        trace_depth: the deepest reachable trace searched for a failure (0: none).
        witnesses: whether to run the witness scripts.
        focus: run only the checks at these names (``init`` for the base
            cases, model transitions, INV-8's boot-order checks) and no
            witnesses; ``None`` runs everything. A focused report proves
            only what it lists.

    Returns:
        The report; ``report.ok`` only if every check run PROVED.

    Raises:
        InputError: an unknown mutation or focus name.
    """
    check_mutations(frozenset(mutations))
    if focus is not None:
        _check_focus(focus)
    started = time.perf_counter()
    wanted = (lambda name: True) if focus is None else focus.__contains__
    results = base_checks() if wanted("init") else []
    results += all_step_checks(mutations, focus)
    inv8 = next(i for i in INVARIANTS if i.id == "INV-8")
    results += boot_order_checks(inv8, mutations, focus)
    if witnesses and focus is None:
        results += witness_checks(mutations)
    if trace_depth > 0:
        results = _with_traces(results, mutations, trace_depth)
    return CheckReport(
        results,
        time.perf_counter() - started,
        z3.get_full_version(),
        frozenset(mutations),
        dict(UNIVERSE),
    )


def _check_focus(focus: frozenset[str]) -> None:
    known = {"init", *(t.name for t in TRANSITIONS), *BOOT_CHECKS}
    unknown = sorted(focus - known)
    if unknown:
        raise InputError(
            f"unknown check `{unknown[0]}`",
            where="focus",
            accepted=", ".join(f"`{k}`" for k in sorted(known)),
        )


def _with_traces(results: list[Result], mutations: frozenset[str], depth: int) -> list[Result]:
    by_id = {i.id: i for i in INVARIANTS}
    done: set[str] = set()
    out = []
    for r in results:
        cex = r.counterexample
        if cex is None or r.method != "inductive" or r.inv in done:
            out.append(r)
            continue
        done.add(r.inv)
        trace = reachable_trace(by_id[r.inv], r.transition, mutations, depth)
        out.append(dataclasses.replace(r, counterexample=dataclasses.replace(cex, trace=trace)))
    return out
