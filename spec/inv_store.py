"""INV-11: every derived input of a decision read back from storage is authenticated first.

Same conventions as :mod:`sop_verified.spec.inv_decisions`: labelled clauses, a
state predicate ``P(s)`` and a step predicate ``P(s, s')``. The tables, the
seal and the attacker are in :mod:`sop_verified.spec.store` and the
``tamper_store`` transition of :mod:`sop_verified.spec.model`.
"""

from __future__ import annotations

import z3

from sop_verified.spec.state import TABLES, Clauses, State
from sop_verified.spec.store import (
    derived_tables,
    seal_check,
    seal_commits_table,
    seal_is_current,
    tables_equal,
)

__all__ = ["stored_state_authenticated", "stored_state_authenticated_step"]


def stored_state_authenticated(s: State) -> Clauses:
    """INV-11 (state): a store that passes the seal check holds exactly the state SOP decides on."""
    mine = derived_tables(s)
    out: Clauses = [
        (
            "a seal whose MAC verifies binds no log size beyond the log's",
            z3.Implies(s.seal.mac_ok, s.seal.log_size <= s.log_size),
        )
    ]
    for i, (name, _, _) in enumerate(TABLES):
        out += [
            (
                f"`{name}`: a current seal commits to the rows SOP decides on",
                z3.Implies(seal_is_current(s), seal_commits_table(s.seal, i, mine[i])),
            ),
            (
                f"`{name}`: stored rows that pass the seal check are the rows SOP decides on",
                z3.Implies(seal_check(s), tables_equal(s.disk[i], mine[i])),
            ),
        ]
    return out


def stored_state_authenticated_step(s: State, t: State) -> Clauses:
    """INV-11 (step): the state SOP decides on changes only in a step that appends to the log."""
    return [
        (
            f"`{name}`: the rows SOP decides on change only with a log append",
            z3.Implies(z3.Not(tables_equal(a, b)), t.log_size > s.log_size),
        )
        for (name, _, _), a, b in zip(TABLES, derived_tables(s), derived_tables(t), strict=True)
    ]
