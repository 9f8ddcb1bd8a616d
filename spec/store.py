"""The derived tables in storage, their state seal, and the attacker who rewrites them (INV-11).

SOP decides on the derived state it keeps (the capability, policy, key, scope,
verdict and snapshot fields of :class:`~sop_verified.spec.state.State`): the
projection of the log, changed only by SOP's own, logged steps. The same
tables also lie in the database (``State.disk``), where an attacker who can
write the database but not read the key files may edit, insert, delete or
reorder rows, and rewrite the seal's bytes. SOP reads them back at boot, and
trusts them only when the seal check passes.

The keyed digest of a row is an uninterpreted function per table
(:data:`DIGESTS`): nothing about its values is assumed except what
:func:`digests_unforgeable` states, the cryptographic assumption of INV-11
(spec/INVARIANTS.md, "What the model abstracts"). A table's physical order is
not modelled: a row's key (its slot) is inside its canonical bytes and is the
first argument of its digest, and SOP reads rows by key, so reordering rows
changes nothing SOP reads; moving a row's content under another key is an edit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import z3

from sop_verified.spec import state as st
from sop_verified.spec.state import (
    TABLES,
    Capability,
    Policy,
    Scope,
    Seal,
    State,
    StoredTable,
    Term,
    VerdictSlot,
    ite,
)

__all__ = [
    "DIGESTS",
    "count",
    "derived_tables",
    "digest_sum",
    "digests_unforgeable",
    "load",
    "seal_check",
    "seal_commits_table",
    "seal_commits_to",
    "seal_is_current",
    "slot_equal",
    "tables_equal",
    "write_through",
]


def _sort(name: str) -> Term:
    return z3.BoolSort() if name == "bool" else z3.IntSort()


DIGESTS: tuple[Term, ...] = tuple(
    z3.Function(f"digest.{name}", z3.IntSort(), *[_sort(s) for s in sorts], z3.IntSort())
    for name, _, sorts in TABLES
)
"""The keyed digest of a row of each table: key (slot), then the row's fields ↦ a number.

Uninterpreted: the model knows nothing of its values, as the attacker, who
does not hold the key, knows nothing of the digest of a row SOP never sealed.
"""


# -- the derived state SOP keeps, as tables -------------------------------------------------
def derived_tables(s: State) -> tuple[StoredTable, ...]:
    """The derived state SOP decides on, shaped as the stored tables (in the order of TABLES)."""
    caps = StoredTable(
        tuple(k < s.cap_count for k in range(st.N_CAPS)),
        tuple((c.parent, c.owner, *c.rights, c.not_before, c.expiry, c.revoked) for c in s.caps),
    )
    policies = StoredTable(
        tuple(p.active for p in s.policies), tuple((p.forbid,) for p in s.policies)
    )
    keys = StoredTable((z3.BoolVal(True),), ((s.key_epoch,),))
    scopes = StoredTable(tuple(q.defined for q in s.scopes), tuple((q.owner,) for q in s.scopes))
    verdicts = StoredTable(
        tuple(v.recorded for v in s.verdicts), tuple((v.value,) for v in s.verdicts)
    )
    snapshots = StoredTable(
        tuple(k < s.snap_count for k in range(st.N_SNAPSHOTS)),
        tuple((x.revoked,) for x in s.snapshots),
    )
    return (caps, policies, keys, scopes, verdicts, snapshots)


def load(s: State, disk: Sequence[StoredTable]) -> State:
    """``s`` with its derived state read back from ``disk`` (what boot does after the check).

    Rows that are not there leave SOP's fields as they were (those slots are
    free, nothing reads them); counts are the number of rows present.
    """
    caps_t, pol_t, key_t, scope_t, verdict_t, snap_t = disk

    def number(t: StoredTable) -> Term:
        return z3.Sum([z3.If(p, 1, 0) for p in t.present])

    caps = tuple(
        ite(
            present,
            Capability(row[0], row[1], tuple(row[2:-3]), row[-3], row[-2], row[-1]),
            cap,
        )
        for present, row, cap in zip(caps_t.present, caps_t.rows, s.caps, strict=True)
    )
    policies = tuple(
        Policy(present, z3.If(present, row[0], p.forbid))
        for present, row, p in zip(pol_t.present, pol_t.rows, s.policies, strict=True)
    )
    scopes = tuple(
        Scope(present, z3.If(present, row[0], q.owner))
        for present, row, q in zip(scope_t.present, scope_t.rows, s.scopes, strict=True)
    )
    verdicts = tuple(
        VerdictSlot(present, z3.If(present, row[0], v.value), v.alarm)
        for present, row, v in zip(verdict_t.present, verdict_t.rows, s.verdicts, strict=True)
    )
    snapshots = tuple(
        dataclasses.replace(x, revoked=z3.If(present, row[0], x.revoked))
        for present, row, x in zip(snap_t.present, snap_t.rows, s.snapshots, strict=True)
    )
    return dataclasses.replace(
        s,
        cap_count=number(caps_t),
        caps=caps,
        policies=policies,
        key_epoch=z3.If(key_t.present[0], key_t.rows[0][0], s.key_epoch),
        scopes=scopes,
        verdicts=verdicts,
        snap_count=number(snap_t),
        snapshots=snapshots,
    )


# -- rows, counts and digest sums -----------------------------------------------------------------
def _identical(a: Sequence[Term], b: Sequence[Term]) -> bool:
    return all(x is y or (isinstance(x, z3.ExprRef) and x.eq(y)) for x, y in zip(a, b, strict=True))


def slot_equal(a: StoredTable, b: StoredTable, k: int) -> Term:
    """Slot ``k`` holds the same thing in both: no row, or the same row."""
    pa, pb, ra, rb = a.present[k], b.present[k], a.rows[k], b.rows[k]
    if _identical((pa, *ra), (pb, *rb)):
        return z3.BoolVal(True)
    same_row = z3.And([x == y for x, y in zip(ra, rb, strict=True)])
    return z3.And(pa == pb, z3.Implies(pa, same_row))


def tables_equal(a: StoredTable, b: StoredTable) -> Term:
    """The two tables hold the same rows under the same keys."""
    return z3.And([slot_equal(a, b, k) for k in range(len(a.present))])


def _digest_term(table: int, t: StoredTable, k: int) -> Term:
    return z3.If(t.present[k], DIGESTS[table](z3.IntVal(k), *t.rows[k]), 0)


def count(t: StoredTable) -> Term:
    """The number of rows in the table."""
    return z3.Sum([z3.If(p, 1, 0) for p in t.present])


def digest_sum(table: int, t: StoredTable) -> Term:
    """The sum of the keyed digests of the table's rows (integers: mod 2^256 abstracted)."""
    return z3.Sum([_digest_term(table, t, k) for k in range(len(t.present))])


# -- the seal ------------------------------------------------------------------------------------
def seal_is_current(s: State) -> Term:
    """The seal's MAC verifies and it binds the log's size."""
    return z3.And(s.seal.mac_ok, s.seal.log_size == s.log_size)


def seal_commits_table(seal: Seal, i: int, t: StoredTable) -> Term:
    """The count and digest sum of table ``i`` in ``seal`` are those of ``t``."""
    return z3.And(seal.counts[i] == count(t), seal.sums[i] == digest_sum(i, t))


def seal_commits_to(seal: Seal, tables: Sequence[StoredTable]) -> Term:
    """Every count and digest sum in ``seal`` is that of ``tables``."""
    return z3.And([seal_commits_table(seal, i, t) for i, t in enumerate(tables)])


def seal_check(s: State) -> Term:
    """The boot check (and ``sop log verify``): a current seal that commits to the stored rows."""
    return z3.And(seal_is_current(s), seal_commits_to(s.seal, s.disk))  # spec: INV-11


def digests_unforgeable(tables: Sequence[StoredTable], sealed: Sequence[StoredTable]) -> Term:
    """The cryptographic assumption, on the tables at hand: equal count and sum ⇒ the same rows.

    Why it holds: the attacker does not hold the key, so he cannot compute the
    digest of a row SOP never sealed (a table holding one passes the check only
    if he guesses a 256-bit value), and the digests he has seen are
    values of a keyed pseudo-random function, among which he cannot find a
    relation that makes a different multiset of rows sum to the same value.
    It is assumed, not proved: the test suite shows the proof fails without it.
    """
    return z3.And(
        [
            z3.Implies(
                z3.And(count(a) == count(b), digest_sum(i, a) == digest_sum(i, b)),
                tables_equal(a, b),
            )
            for i, (a, b) in enumerate(zip(tables, sealed, strict=True))
        ]
    )


def write_through(s: State, post: State, *, compare: bool = True, log_size: bool = True) -> State:
    """``post`` with SOP's own writes of the step from ``s`` applied to the store and the seal.

    Every derived row SOP changes is written to its table, and a trigger in the
    same transaction adds the new row's digest to the seal and subtracts the
    stored old row's. SOP's write is a compare-and-swap: it expects the stored
    row to be the one it last wrote. The seal is MAC'd again only if its MAC
    verifies, it binds the log's size before the step, and every
    compare-and-swap held; otherwise it is left unverifiable, so the next boot
    is FAILED. A step that appends to the log moves the seal's log size too.

    Args:
        s: the pre-state.
        post: the state the transition produced (its own derived fields).
        compare: the write is a compare-and-swap (``False``: the seeded bug
            ``seal_trusts_stored_row``).
        log_size: the seal is MAC'd again only if it binds the log's size
            (``False``: the seeded bug ``remac_ignores_log_size``).

    Returns:
        ``post`` with ``disk`` and ``seal`` updated.
    """
    before, after = derived_tables(s), derived_tables(post)
    disk: list[StoredTable] = []
    counts, sums, changed_any, swaps = [], [], [], []
    for i, (old, new, stored) in enumerate(zip(before, after, s.disk, strict=True)):
        present, rows, d_count, d_sum = [], [], [], []
        for k in range(len(stored.present)):
            changed = z3.Not(slot_equal(old, new, k))
            if z3.is_false(z3.simplify(changed)):
                present.append(stored.present[k])
                rows.append(stored.rows[k])
                continue
            changed_any.append(changed)
            swaps.append(z3.Implies(changed, slot_equal(stored, old, k)))  # spec: INV-11
            present.append(z3.If(changed, new.present[k], stored.present[k]))
            rows.append(ite(changed, new.rows[k], stored.rows[k]))
            d_count.append(
                z3.If(changed, z3.If(new.present[k], 1, 0) - z3.If(stored.present[k], 1, 0), 0)
            )
            d_sum.append(z3.If(changed, _digest_term(i, new, k) - _digest_term(i, stored, k), 0))
        disk.append(StoredTable(tuple(present), tuple(rows)))
        counts.append(s.seal.counts[i] + z3.Sum(d_count) if d_count else s.seal.counts[i])
        sums.append(s.seal.sums[i] + z3.Sum(d_sum) if d_sum else s.seal.sums[i])
    current = seal_is_current(s) if log_size else s.seal.mac_ok
    held = z3.And(swaps) if compare and swaps else z3.BoolVal(True)
    resealed = Seal(z3.And(current, held), post.log_size, tuple(counts), tuple(sums))
    touched = z3.Or(*changed_any, post.log_size != s.log_size)
    return dataclasses.replace(post, disk=tuple(disk), seal=ite(touched, resealed, s.seal))
