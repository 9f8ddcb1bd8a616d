"""Authority and durable state: INV-4, INV-5, INV-6, INV-7, INV-8 and INV-10.

Same conventions as :mod:`sop_verified.spec.inv_decisions`: labelled clauses, state
predicates ``P(s)`` and step predicates ``P(s, s')``.
"""

from __future__ import annotations

import z3

from sop_verified.spec import state as st
from sop_verified.spec.derived import snapshot_verifies
from sop_verified.spec.state import READY, WRITE, Clauses, State, pick, same

__all__ = [
    "attenuation_only",
    "attenuation_only_step",
    "deterministic_boot",
    "log_append_only",
    "log_append_only_step",
    "no_bridge_remediation",
    "resume_integrity_step",
    "scope_confinement",
    "scope_confinement_step",
]


# -- INV-4 ---------------------------------------------------------------------------------------
def scope_confinement(s: State) -> Clauses:
    """INV-4: every write landed inside an approved scope root owned by the writing protocol."""
    out: Clauses = []
    for k, e in enumerate(s.effects):
        scope = pick(s.scopes, e.scope)
        inside = z3.And(
            e.scope >= 0, e.scope < st.N_SCOPES, scope.defined, scope.owner == e.proto, e.inside
        )
        out.append(
            (
                f"effect[{k}]: a write lands inside a scope its protocol owns",
                z3.Implies(z3.And(k < s.effect_count, e.act == WRITE), inside),
            )
        )
    return out


def scope_confinement_step(s: State, t: State) -> Clauses:
    """INV-4 (step): an approved scope root is never withdrawn or handed to another protocol."""
    return [
        (
            f"scope[{q}]: once approved, it keeps its owner",
            z3.Implies(a.defined, z3.And(b.defined, b.owner == a.owner)),
        )
        for q, (a, b) in enumerate(zip(s.scopes, t.scopes, strict=True))
    ]


# -- INV-5 ---------------------------------------------------------------------------------------
def log_append_only(s: State) -> Clauses:
    """INV-5 (state): every checkpoint commits to a prefix of the log, and to earlier ones."""
    out: Clauses = []
    for c, ck in enumerate(s.checkpoints):
        used = c < s.checkpoint_count
        prefix = z3.And(
            [z3.Implies(k < ck.size, same(ck.entries[k], s.log[k])) for k in range(st.N_LOG)]
        )
        out.append(
            (
                f"checkpoint[{c}]: it is consistent with the log (a prefix of it)",
                z3.Implies(used, z3.And(ck.size >= 0, ck.size <= s.log_size, prefix)),
            )
        )
        for c2 in range(c + 1, st.N_CHECKPOINTS):
            later = s.checkpoints[c2]
            agree = z3.And(
                [
                    z3.Implies(k < ck.size, same(ck.entries[k], later.entries[k]))
                    for k in range(st.N_LOG)
                ]
            )
            out.append(
                (
                    f"checkpoint[{c2}]: it is consistent with checkpoint[{c}]",
                    z3.Implies(c2 < s.checkpoint_count, z3.And(ck.size <= later.size, agree)),
                )
            )
    return out


def log_append_only_step(s: State, t: State) -> Clauses:
    """INV-5 (step): the log only grows; entries and checkpoints are never changed or removed."""
    out: Clauses = [
        ("the log never shrinks", t.log_size >= s.log_size),
        ("no checkpoint is removed", t.checkpoint_count >= s.checkpoint_count),
    ]
    for k, (a, b) in enumerate(zip(s.log, t.log, strict=True)):
        out.append(
            (f"log[{k}]: once appended it never changes", z3.Implies(k < s.log_size, same(a, b)))
        )
    for c, (old, new) in enumerate(zip(s.checkpoints, t.checkpoints, strict=True)):
        kept = z3.And(
            old.size == new.size,
            *[
                z3.Implies(k < old.size, same(old.entries[k], new.entries[k]))
                for k in range(st.N_LOG)
            ],
        )
        out.append(
            (
                f"checkpoint[{c}]: once signed it never changes",
                z3.Implies(c < s.checkpoint_count, kept),
            )
        )
    return out


# -- INV-6 ---------------------------------------------------------------------------------------
def no_bridge_remediation(s: State) -> Clauses:
    """INV-6: no bridge message changed capabilities, policies, keys or scopes (a ghost count)."""
    return [
        ("no bridge message changed capabilities, policies, keys or scopes", s.bridge_changes == 0)
    ]


# -- INV-7 ---------------------------------------------------------------------------------------
def resume_integrity_step(s: State, t: State) -> Clauses:
    """INV-7: a resume happens only for a snapshot that verifies completely in the pre-state."""
    resumed = t.resumes != s.resumes
    return [
        (f"a resumed snapshot: {label}", z3.Implies(resumed, term))
        for label, term in snapshot_verifies(s, t.active_snapshot)
    ]


# -- INV-8 ---------------------------------------------------------------------------------------
def deterministic_boot(s: State) -> Clauses:
    """INV-8 (state machine part): READY only when every service booted and is up."""
    return [
        (f"READY ⇒ service `{name}` is up", z3.Implies(s.health == READY, up))
        for name, up in zip(st.SERVICES, s.services_up, strict=True)
    ]


# -- INV-10 --------------------------------------------------------------------------------------
def attenuation_only(s: State) -> Clauses:
    """INV-10 (state): a child never grants more than its parent; revoking a parent revokes it."""
    out: Clauses = []
    for i, cap in enumerate(s.caps):
        child = z3.And(i < s.cap_count, cap.parent >= 0)
        par = pick(s.caps, cap.parent)
        subset = z3.And([z3.Implies(r, pr) for r, pr in zip(cap.rights, par.rights, strict=True)])
        out += [
            (f"cap[{i}]: its rights are a subset of its parent's", z3.Implies(child, subset)),
            (
                f"cap[{i}]: its validity window lies within its parent's",
                z3.Implies(
                    child, z3.And(cap.not_before >= par.not_before, cap.expiry <= par.expiry)
                ),
            ),
            (
                f"cap[{i}]: it is bound to its parent's protocol",
                z3.Implies(child, cap.owner == par.owner),
            ),
            (
                f"cap[{i}]: revoked when its parent is revoked",
                z3.Implies(z3.And(child, par.revoked), cap.revoked),
            ),
        ]
    return out


def attenuation_only_step(s: State, t: State) -> Clauses:
    """INV-10 (step): admitted claims never change; revocation is permanent."""
    out: Clauses = [("no capability is removed", t.cap_count >= s.cap_count)]
    for i, (a, b) in enumerate(zip(s.caps, t.caps, strict=True)):
        claims = same(
            (a.parent, a.owner, a.rights, a.not_before, a.expiry),
            (b.parent, b.owner, b.rights, b.not_before, b.expiry),
        )
        out += [
            (f"cap[{i}]: its claims never change", z3.Implies(i < s.cap_count, claims)),
            (
                f"cap[{i}]: once revoked it stays revoked",
                z3.Implies(z3.And(i < s.cap_count, a.revoked), b.revoked),
            ),
        ]
    return out
