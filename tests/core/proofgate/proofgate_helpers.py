"""Obligation builders and paths shared by the proof-gate tests."""

from __future__ import annotations

from pathlib import Path

from sop_verified.core.request import Obligation

CORPUS = Path(__file__).parent / "corpus"

UNSAT_LIA = "(set-logic QF_LIA)(declare-const x Int)(assert (> x 1))(assert (< x 0))(check-sat)"
SAT_LIA = "(set-logic QF_LIA)(declare-const x Int)(assert (> x 1))(assert (< x 3))(check-sat)"

# a 64-bit factoring problem: far beyond any test's rlimit or deadline
FACTOR = """(set-logic QF_BV)
(declare-const a (_ BitVec 64))
(declare-const b (_ BitVec 64))
(assert (= (bvmul a b) #x9e3779b97f4a7c15))
(assert (bvugt a #x0000000000000001))
(assert (bvugt b #x0000000000000001))
(assert (bvult a #x00000000ffffffff))
(assert (bvult b #x00000000ffffffff))
(check-sat)
"""


def smt2(source: str, oid: str = "test:1") -> Obligation:
    """An SMT-LIB obligation, built without the request model's size check (the gate checks)."""
    return Obligation.model_construct(id=oid, format="smt2", source=source)


def structured(source: str, oid: str = "test:1") -> Obligation:
    """A structured JSON obligation."""
    return Obligation.model_construct(id=oid, format="json", source=source)
