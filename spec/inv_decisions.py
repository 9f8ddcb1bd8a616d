"""The decision path's invariants: AUX-1, INV-1, INV-2, INV-3 and INV-9.

Each predicate returns labelled clauses ``[(what it says, Z3 term), …]``; a
state predicate ``P(s)`` holds in every reachable state, a step predicate
``P(s, s')`` across every step. spec/INVARIANTS.md states each in English.
"""

from __future__ import annotations

import z3

from sop_verified.spec import state as st
from sop_verified.spec.derived import admin_changed, covers, revoked_or_ancestor_revoked
from sop_verified.spec.state import (
    ADMIN_ENTRY,
    DECISION_ENTRY,
    DEGRADED,
    FAILED,
    PROVED,
    READY,
    Clauses,
    Entry,
    State,
    Term,
    pick,
)

__all__ = [
    "deny_by_default",
    "effect_after_record",
    "effect_after_record_step",
    "fail_closed",
    "proof_immutability",
    "proof_immutability_step",
    "well_formed",
]


# -- AUX-1 ---------------------------------------------------------------------------------------
def well_formed(s: State) -> Clauses:
    """AUX-1: counters within their slots, fields within range, parents earlier than children."""
    out = [
        ("0 <= cap_count <= N_CAPS", z3.And(s.cap_count >= 0, s.cap_count <= st.N_CAPS)),
        ("0 <= log_size <= N_LOG", z3.And(s.log_size >= 0, s.log_size <= st.N_LOG)),
        (
            "0 <= checkpoint_count <= N_CHECKPOINTS",
            z3.And(s.checkpoint_count >= 0, s.checkpoint_count <= st.N_CHECKPOINTS),
        ),
        (
            "0 <= effect_count <= N_EFFECTS",
            z3.And(s.effect_count >= 0, s.effect_count <= st.N_EFFECTS),
        ),
        (
            "0 <= snap_count <= N_SNAPSHOTS",
            z3.And(s.snap_count >= 0, s.snap_count <= st.N_SNAPSHOTS),
        ),
        ("health is one of the four states", z3.And(s.health >= 0, s.health < len(st.HEALTHS))),
    ]
    out += [
        ("now >= 0", s.now >= 0),
        (
            "-1 <= active_snapshot < snap_count",
            z3.And(s.active_snapshot >= -1, s.active_snapshot < s.snap_count),
        ),
    ]
    for i, cap in enumerate(s.caps):
        out.append(
            (
                f"cap[{i}]: its parent is -1 or an earlier slot; its owner a protocol",
                z3.Implies(
                    i < s.cap_count,
                    z3.And(cap.parent >= -1, cap.parent < i, _within(cap.owner, st.N_PROTOCOLS)),
                ),
            )
        )
    for k, e in enumerate(s.log):
        fields = z3.And(
            _within(e.kind, len(st.ENTRY_KINDS)),
            _within(e.cap + 1, st.N_CAPS + 1),
            _within(e.act, st.N_ACTS),
            _within(e.scope, st.N_SCOPES),
            _within(e.proto, st.N_PROTOCOLS),
        )
        out.append((f"log[{k}]: its fields are in range", z3.Implies(k < s.log_size, fields)))
    for h, v in enumerate(s.verdicts):
        out.append(
            (
                f"verdict[{h}]: a recorded value is a verdict",
                z3.Implies(v.recorded, _within(v.value, len(st.VERDICTS))),
            )
        )
    for q, sc in enumerate(s.scopes):
        out.append(
            (
                f"scope[{q}]: its owner is a protocol",
                z3.Implies(sc.defined, _within(sc.owner, st.N_PROTOCOLS)),
            )
        )
    d = s.last
    out.append(
        (
            "the last decision's request is in range",
            z3.Implies(
                d.made,
                z3.And(
                    _within(d.cap + 1, st.N_CAPS + 1),
                    _within(d.act, st.N_ACTS),
                    _within(d.scope, st.N_SCOPES),
                    _within(d.proto, st.N_PROTOCOLS),
                ),
            ),
        )
    )
    return out


def _within(t: Term, n: int) -> Term:
    return z3.And(t >= 0, t < n)


# -- INV-1 ---------------------------------------------------------------------------------------
def deny_by_default(s: State) -> Clauses:
    """INV-1: ALLOW ⇒ READY ∧ valid capability ∧ a permit ∧ no forbid ∧ all obligations PROVED."""
    d = s.last
    cap = pick(s.caps, d.cap)
    permit = z3.Or(
        [
            z3.And(p.active, z3.Not(p.forbid), mt)
            for p, mt in zip(s.policies, d.matches, strict=True)
        ]
    )
    forbid = z3.Or(
        [z3.And(p.active, p.forbid, mt) for p, mt in zip(s.policies, d.matches, strict=True)]
    )
    proved = z3.And(
        [
            z3.Implies(o, z3.And(v.recorded, v.value == PROVED))
            for o, v in zip(d.obligations, s.verdicts, strict=True)
        ]
    )
    needs = [
        ("SOP is READY", s.health == READY),
        ("the capability is admitted", z3.And(d.cap >= 0, d.cap < s.cap_count)),
        (
            "neither the capability nor an ancestor is revoked",
            z3.Not(revoked_or_ancestor_revoked(s, d.cap)),
        ),
        (
            "now is inside the capability's validity window",
            z3.And(cap.not_before <= s.now, s.now < cap.expiry),
        ),
        ("the capability covers the action on the scope", covers(cap, d.act, d.scope)),
        ("the capability is bound to the requesting protocol", cap.owner == d.proto),
        ("some active permit matches", permit),
        ("no active forbid matches", z3.Not(forbid)),
        ("every obligation is PROVED", proved),
    ]
    allowed = z3.And(d.made, d.allow)
    return [(f"ALLOW ⇒ {label}", z3.Implies(allowed, t)) for label, t in needs]


# -- INV-2 ---------------------------------------------------------------------------------------
def _is_recorded(s: State, allow: Term) -> Term:
    d = s.last
    e = pick(s.log, d.index)
    return z3.And(
        d.recorded,
        d.index >= 0,
        d.index < s.log_size,
        e.kind == DECISION_ENTRY,
        e.allow == allow,
        e.cap == d.cap,
        e.act == d.act,
        e.scope == d.scope,
        e.proto == d.proto,
    )


def fail_closed(s: State) -> Clauses:
    """INV-2: a fault or a storage failure while deciding is DENY, and recorded if it can be."""
    d = s.last
    return [
        (
            "a fault while deciding yields DENY",
            z3.Implies(z3.And(d.made, d.fault), z3.Not(d.allow)),
        ),
        (
            "a decision that could not be logged is DENY",
            z3.Implies(z3.And(d.made, d.storage_fault), z3.Not(d.allow)),
        ),
        (
            "a fault is recorded as DENY unless the log itself failed",
            z3.Implies(z3.And(d.made, d.fault, z3.Not(d.storage_fault)), _is_recorded(s, False)),
        ),
        (
            "the answer given is the decision recorded",
            z3.Implies(z3.And(d.made, d.recorded), _is_recorded(s, d.allow)),
        ),
    ]


# -- INV-3 ---------------------------------------------------------------------------------------
def proof_immutability(s: State) -> Clauses:
    """INV-3 (state): an integrity alarm stands on a recorded verdict and keeps SOP not READY."""
    out: Clauses = []
    for h, v in enumerate(s.verdicts):
        out += [
            (f"verdict[{h}]: an alarm implies a recorded verdict", z3.Implies(v.alarm, v.recorded)),
            (
                f"verdict[{h}]: while its alarm stands SOP is DEGRADED or FAILED (all denied)",
                z3.Implies(v.alarm, z3.Or(s.health == DEGRADED, s.health == FAILED)),
            ),
        ]
    return out


def proof_immutability_step(s: State, t: State) -> Clauses:
    """INV-3 (step): a recorded verdict never changes or disappears."""
    return [
        (
            f"verdict[{h}]: once recorded it stays, unchanged",
            z3.Implies(v.recorded, z3.And(w.recorded, w.value == v.value)),
        )
        for h, (v, w) in enumerate(zip(s.verdicts, t.verdicts, strict=True))
    ]


# -- INV-9 ---------------------------------------------------------------------------------------
def effect_after_record(s: State) -> Clauses:
    """INV-9: every effect has its own ALLOW decision, appended to the log before it happened."""
    out: Clauses = []
    for k, e in enumerate(s.effects):
        used = k < s.effect_count
        entry: Entry = pick(s.log, e.decision)
        out += [
            (
                f"effect[{k}]: its decision was in the log before the effect",
                z3.Implies(
                    used,
                    z3.And(
                        e.decision >= 0, e.decision < e.log_size_at, e.log_size_at <= s.log_size
                    ),
                ),
            ),
            (
                f"effect[{k}]: that entry is an ALLOW for the same action, scope and protocol",
                z3.Implies(
                    used,
                    z3.And(
                        entry.kind == DECISION_ENTRY,
                        entry.allow,
                        entry.act == e.act,
                        entry.scope == e.scope,
                        entry.proto == e.proto,
                    ),
                ),
            ),
        ]
        for k2 in range(k + 1, st.N_EFFECTS):
            out.append(
                (
                    f"effect[{k2}]: its ALLOW is not the one effect[{k}] used",
                    z3.Implies(k2 < s.effect_count, e.decision != s.effects[k2].decision),
                )
            )
    return out


def effect_after_record_step(s: State, t: State) -> Clauses:
    """INV-9 (step): a change to capabilities, policies, keys or scopes is logged with it."""
    entry = pick(t.log, s.log_size)
    logged = z3.And(t.log_size == s.log_size + 1, entry.kind == ADMIN_ENTRY)
    return [("an admin change appends its admin entry", z3.Implies(admin_changed(s, t), logged))]
