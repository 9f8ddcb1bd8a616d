"""Notions defined on the model state that transitions and invariants share.

The capability chain (``ancestors``), what a capability covers, and what
verifying a snapshot means. Indices are symbolic; out-of-range slots are the
caller's guard to exclude.
"""

from __future__ import annotations

import z3

from sop_verified.spec import state as st
from sop_verified.spec.state import (
    SEAL_ENTRY,
    Capability,
    Clauses,
    State,
    Term,
    leaves,
    pick,
    right_index,
)

__all__ = [
    "admin_changed",
    "admin_state",
    "ancestors",
    "covers",
    "included_in_log",
    "lineage_verifies",
    "parent_of",
    "revoked_or_ancestor_revoked",
    "snapshot_verifies",
]


def parent_of(s: State, c: Term) -> Term:
    """The parent slot of capability ``c`` (-1 for a root or for -1)."""
    return z3.If(c < 0, z3.IntVal(-1), pick([k.parent for k in s.caps], c))


def ancestors(s: State, c: Term) -> list[Term]:
    """The ancestor chain of ``c``: parent, grandparent, … (-1 once past the root)."""
    out, a = [], c
    for _ in range(st.N_CAPS - 1):
        a = parent_of(s, a)
        out.append(a)
    return out


def revoked_or_ancestor_revoked(s: State, c: Term) -> Term:
    """Capability ``c`` or one of its ancestors is revoked."""
    revoked = [k.revoked for k in s.caps]
    chain = [pick(revoked, c)] + [z3.And(a >= 0, pick(revoked, a)) for a in ancestors(s, c)]
    return z3.Or(chain)


def covers(cap: Capability, act: Term, scope: Term) -> Term:
    """The capability's rights include ``act`` on ``scope``."""
    return z3.Or(
        [
            z3.And(act == a, scope == q, cap.rights[right_index(a, q)])
            for a in range(st.N_ACTS)
            for q in range(st.N_SCOPES)
        ]
    )


def included_in_log(s: State, x: Term) -> Term:
    """Snapshot ``x``'s manifest names a log entry that is its seal entry."""
    snap = pick(s.snapshots, x)
    entry = pick(s.log, snap.entry)
    return z3.And(
        snap.entry >= 0, snap.entry < s.log_size, entry.kind == SEAL_ENTRY, entry.snap == x
    )


def lineage_verifies(s: State, x: Term) -> Term:
    """Snapshot ``x`` is a root, or its parent is an earlier, unrevoked snapshot."""
    snap = pick(s.snapshots, x)
    parent = pick(s.snapshots, snap.parent)
    return z3.Or(
        snap.parent == -1, z3.And(snap.parent >= 0, snap.parent < x, z3.Not(parent.revoked))
    )


def snapshot_verifies(s: State, x: Term, *, lineage: bool = True) -> Clauses:
    """Everything resume checks of snapshot ``x``, as labelled clauses (INV-7)."""
    snap = pick(s.snapshots, x)
    out = [
        ("the snapshot was sealed", z3.And(x >= 0, x < s.snap_count)),
        ("its manifest signature verifies", snap.sig_ok),
        ("every blob digest verifies", snap.blobs_ok),
        ("its seal entry is included in the log", included_in_log(s, x)),
        ("the snapshot is not revoked", z3.Not(snap.revoked)),
    ]
    if lineage:
        out.append(("its lineage verifies", lineage_verifies(s, x)))
    return out


def admin_state(s: State) -> list[Term]:
    """What INV-6 protects: capabilities, policies, keys and scopes (every leaf)."""
    return [t for _, t in leaves((s.cap_count, s.caps, s.policies, s.key_epoch, s.scopes))]


def admin_changed(s: State, t: State) -> Term:
    """The step from ``s`` to ``t`` changed capabilities, policies, keys or scopes."""
    pairs = zip(admin_state(s), admin_state(t), strict=True)
    diffs = [a != b for a, b in pairs if not a.eq(b)]
    return z3.Or(diffs) if diffs else z3.BoolVal(False)
