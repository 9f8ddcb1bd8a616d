"""The supported SMT-LIB logics and the theory symbols each one admits.

Deny by default: a logic not listed in :data:`LOGICS` is REJECTED, and so is
any function symbol that is neither declared by the obligation nor listed
here for one of the logic's theories (z3 extensions such as pseudo-Boolean
or sequence operators, and string predicates that z3 fails to decide, are
simply absent). The table is the executable form of spec/OBLIGATIONS.md.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LOGICS", "THEORY_SYMBOLS", "Logic", "Theory", "TheorySymbol"]


class Theory:
    """Theory tags of symbols and sorts."""

    CORE = "core"
    ARITH = "arith"  # ints or reals
    INTS = "ints"
    REALS = "reals"
    BV = "bv"
    ARRAYS = "arrays"
    STRINGS = "strings"
    STRINGS_INTS = "strings+ints"


@dataclass(frozen=True, slots=True)
class Logic:
    """One supported logic, as the set of features the filter admits."""

    name: str
    quantifiers: bool = False
    uf: bool = False
    sorts: bool = False
    arrays: bool = False
    bv: bool = False
    ints: bool = False
    reals: bool = False
    strings: bool = False

    @property
    def theories(self) -> frozenset[str]:
        """The theory tags whose symbols are part of this logic."""
        return _THEORIES[self.name]


def _logic(name: str, **features: bool) -> Logic:
    return Logic(name, **features)


def _theories(logic: Logic) -> frozenset[str]:
    tags = {
        Theory.CORE: True,
        Theory.ARITH: logic.ints or logic.reals,
        Theory.INTS: logic.ints,
        Theory.REALS: logic.reals,
        Theory.BV: logic.bv,
        Theory.ARRAYS: logic.arrays,
        Theory.STRINGS: logic.strings,
        Theory.STRINGS_INTS: logic.strings and logic.ints,
    }
    return frozenset(tag for tag, present in tags.items() if present)


LOGICS: dict[str, Logic] = {
    logic.name: logic
    for logic in (
        _logic("QF_UF", uf=True, sorts=True),
        _logic("QF_LIA", ints=True),
        _logic("QF_LRA", reals=True),
        _logic("QF_BV", bv=True),
        _logic("QF_UFBV", uf=True, sorts=True, bv=True),
        _logic("QF_UFLIA", uf=True, sorts=True, ints=True),
        _logic("QF_UFLRA", uf=True, sorts=True, reals=True),
        _logic("QF_AX", arrays=True, sorts=True),
        _logic("QF_ALIA", arrays=True, ints=True),
        _logic("QF_AUFLIA", arrays=True, uf=True, sorts=True, ints=True),
        _logic("QF_ABV", arrays=True, bv=True),
        _logic("QF_S", strings=True),
        _logic("QF_SLIA", strings=True, ints=True),
        _logic("UF", quantifiers=True, uf=True, sorts=True),
        _logic("LIA", quantifiers=True, ints=True),
        _logic("LRA", quantifiers=True, reals=True),
        _logic("UFLIA", quantifiers=True, uf=True, sorts=True, ints=True),
    )
}


@dataclass(frozen=True, slots=True)
class TheorySymbol:
    """A theory function symbol: its theory, arity bounds and number of indices."""

    theory: str
    min_args: int
    max_args: int | None
    indices: int = 0
    linear: bool = False  # all arguments but one must be numeric constants
    constant_divisor: bool = False  # every argument after the first is a nonzero constant


def _table() -> dict[str, TheorySymbol]:
    t: dict[str, TheorySymbol] = {}

    def add(
        names: str,
        theory: str,
        lo: int,
        hi: int | None,
        *,
        indices: int = 0,
        linear: bool = False,
        constant_divisor: bool = False,
    ) -> None:
        for name in names.split():
            t[name] = TheorySymbol(theory, lo, hi, indices, linear, constant_divisor)

    add("true false", Theory.CORE, 0, 0)
    add("not", Theory.CORE, 1, 1)
    add("=> and or xor = distinct", Theory.CORE, 2, None)
    add("ite", Theory.CORE, 3, 3)
    add("+ <= < >= >", Theory.ARITH, 2, None)
    add("-", Theory.ARITH, 1, None)
    add("*", Theory.ARITH, 2, None, linear=True)
    add("div", Theory.INTS, 2, None, constant_divisor=True)
    add("mod", Theory.INTS, 2, 2, constant_divisor=True)
    add("abs", Theory.INTS, 1, 1)
    add("/", Theory.REALS, 2, None, constant_divisor=True)
    add("bvnot bvneg", Theory.BV, 1, 1)
    add("bvand bvor bvxor bvadd bvmul", Theory.BV, 2, None)
    add(
        "concat bvudiv bvurem bvshl bvlshr bvnand bvnor bvxnor bvcomp bvsub bvsdiv bvsrem "
        "bvsmod bvashr bvult bvule bvugt bvuge bvslt bvsle bvsgt bvsge",
        Theory.BV,
        2,
        2,
    )
    add("extract", Theory.BV, 1, 1, indices=2)
    add("zero_extend sign_extend repeat rotate_left rotate_right", Theory.BV, 1, 1, indices=1)
    add("select", Theory.ARRAYS, 2, 2)
    add("store", Theory.ARRAYS, 3, 3)
    add("re.none re.all re.allchar", Theory.STRINGS, 0, 0)
    add("str.++ re.++ re.union re.inter", Theory.STRINGS, 2, None)
    add("str.in_re re.range re.diff", Theory.STRINGS, 2, 2)
    add("str.to_re re.* re.+ re.opt re.comp", Theory.STRINGS, 1, 1)
    add("re.loop", Theory.STRINGS, 1, 1, indices=2)
    add("re.^", Theory.STRINGS, 1, 1, indices=1)
    add("str.len", Theory.STRINGS_INTS, 1, 1)
    return t


THEORY_SYMBOLS: dict[str, TheorySymbol] = _table()
_THEORIES: dict[str, frozenset[str]] = {name: _theories(logic) for name, logic in LOGICS.items()}
