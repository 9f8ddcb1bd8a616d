"""The invariants of SOP: INV-1 … INV-11 and the auxiliary AUX-1, as one registry.

The predicates live in :mod:`sop_verified.spec.inv_decisions` (the decision path) and
:mod:`sop_verified.spec.inv_authority` (authority and durable state); each returns
labelled clauses. An :class:`Invariant` pairs an id and name with its state
predicate ``P(s)`` and/or step predicate ``P(s, s')``. spec/INVARIANTS.md
states each in English and names these functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sop_verified.spec.inv_authority import (
    attenuation_only,
    attenuation_only_step,
    deterministic_boot,
    log_append_only,
    log_append_only_step,
    no_bridge_remediation,
    resume_integrity_step,
    scope_confinement,
    scope_confinement_step,
)
from sop_verified.spec.inv_decisions import (
    deny_by_default,
    effect_after_record,
    effect_after_record_step,
    fail_closed,
    proof_immutability,
    proof_immutability_step,
    well_formed,
)
from sop_verified.spec.inv_store import (
    stored_state_authenticated,
    stored_state_authenticated_step,
)
from sop_verified.spec.state import Clauses, State

__all__ = [
    "INVARIANTS",
    "Clauses",
    "Invariant",
    "attenuation_only",
    "attenuation_only_step",
    "deny_by_default",
    "deterministic_boot",
    "effect_after_record",
    "effect_after_record_step",
    "fail_closed",
    "log_append_only",
    "log_append_only_step",
    "no_bridge_remediation",
    "proof_immutability",
    "proof_immutability_step",
    "resume_integrity_step",
    "scope_confinement",
    "scope_confinement_step",
    "stored_state_authenticated",
    "stored_state_authenticated_step",
    "well_formed",
]


# -- the registry --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Invariant:
    """One invariant: its id, name, statement and predicates."""

    id: str
    name: str
    statement: str
    state: Callable[[State], Clauses] | None = None
    step: Callable[[State, State], Clauses] | None = None

    def across(self, s: State, t: State) -> Clauses:
        """The clauses that must hold across a step ``s`` → ``t`` (state part in ``t``)."""
        out: Clauses = []
        if self.state is not None:
            out += self.state(t)
        if self.step is not None:
            out += self.step(s, t)
        return out


INVARIANTS: tuple[Invariant, ...] = (
    Invariant(
        "AUX-1",
        "well_formed",
        "counters and fields within range; parents earlier than children",
        well_formed,
    ),
    Invariant(
        "INV-1",
        "deny_by_default",
        "ALLOW ⇒ valid capability ∧ permit ∧ no forbid ∧ all obligations PROVED ∧ READY",
        deny_by_default,
    ),
    Invariant(
        "INV-2",
        "fail_closed",
        "a fault or storage failure while deciding ⇒ DENY, recorded",
        fail_closed,
    ),
    Invariant(
        "INV-3",
        "proof_immutability",
        "a recorded verdict never changes; a disagreeing re-check raises an alarm and denies",
        proof_immutability,
        proof_immutability_step,
    ),
    Invariant(
        "INV-4",
        "scope_confinement",
        "every write lands inside an approved scope root its protocol owns",
        scope_confinement,
        scope_confinement_step,
    ),
    Invariant(
        "INV-5",
        "log_append_only",
        "checkpoints are consistent; entries never change",
        log_append_only,
        log_append_only_step,
    ),
    Invariant(
        "INV-6",
        "no_bridge_remediation",
        "no bridge message changes capabilities, policies, keys or scopes",
        no_bridge_remediation,
    ),
    Invariant(
        "INV-7",
        "resume_integrity",
        "a snapshot resumes only if it verifies completely",
        None,
        resume_integrity_step,
    ),
    Invariant(
        "INV-8",
        "deterministic_boot",
        "boot order is a function of the graph; any boot failure leaves SOP not READY",
        deterministic_boot,
    ),
    Invariant(
        "INV-9",
        "effect_after_record",
        "no effect unless its ALLOW is in the log first; admin changes are logged",
        effect_after_record,
        effect_after_record_step,
    ),
    Invariant(
        "INV-10",
        "attenuation_only",
        "a child never grants more than its parent; revoking a parent revokes all descendants",
        attenuation_only,
        attenuation_only_step,
    ),
    Invariant(
        "INV-11",
        "stored_state_authenticated",
        "a stored input of a decision is trusted only if it authenticates against the log; "
        "else SOP refuses",
        stored_state_authenticated,
        stored_state_authenticated_step,
    ),
)
