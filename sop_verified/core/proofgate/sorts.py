"""Names and sorts of an obligation: what may be declared, and which sorts a logic admits.

The base of :class:`~sop_verified.core.proofgate.terms.Signature`: it keeps
the declared sorts and functions, refuses reserved names (SMT-LIB reserved
words, theory symbols, the ``sop!``/``sop.`` prefixes the gate uses itself),
and checks and prints sort expressions.
"""

from __future__ import annotations

import re

from sop_verified.core.contracts import ensure, invariant
from sop_verified.core.proofgate.logics import LOGICS, THEORY_SYMBOLS, Logic
from sop_verified.core.proofgate.sexpr import Atom, FilterLimits, Kind, Node, SList
from sop_verified.errors import ObligationError

__all__ = ["BUILTIN_SORTS", "RESERVED_PREFIXES", "RESERVED_WORDS", "Declarations", "render_symbol"]

_RESERVED = """
_ ! as let exists forall match par NUMERAL DECIMAL STRING BINARY HEXADECIMAL
assert check-sat declare-const declare-fun declare-sort define-fun define-sort
set-logic set-info set-option get-model get-value push pop reset exit echo include
check-sat-assuming declare-datatype declare-datatypes define-fun-rec define-funs-rec
get-assertions get-assignment get-info get-option get-proof get-unsat-core
get-unsat-assumptions reset-assertions
"""
RESERVED_WORDS = frozenset(_RESERVED.split())
RESERVED_PREFIXES = ("sop!", "sop.")
BUILTIN_SORTS = frozenset({"Bool", "Int", "Real", "String", "RegLan", "BitVec", "Array"})

_SIMPLE = re.compile(r"[A-Za-z~!@$%^&*_+=<>.?/\-][A-Za-z0-9~!@$%^&*_+=<>.?/\-]*")


def _render_symbol(name: str) -> str:
    if _SIMPLE.fullmatch(name) and name not in RESERVED_WORDS:
        return name
    return f"|{name}|"


@ensure(lambda result: result != "")
def render_symbol(name: str) -> str:
    """Print a symbol: bare when it is a simple symbol, else ``|quoted|``."""
    return _render_symbol(name)


@invariant(lambda self: self.logic.name in LOGICS)
class Declarations:
    """The sorts and functions an obligation has declared so far, under one logic."""

    _symbol = staticmethod(_render_symbol)

    def __init__(self, logic: Logic, limits: FilterLimits) -> None:
        """Start with nothing declared.

        Args:
            logic: the obligation's logic.
            limits: the filter caps (widths, indices, expansion).
        """
        self.logic = logic
        self.limits = limits
        self.sorts: dict[str, int] = {}  # name -> number of parameters
        self.funs: dict[str, int] = {}  # name -> arity (declared and defined)
        self.macros: dict[str, tuple[tuple[str, ...], str]] = {}  # defined: params, body
        self.expanded = 0  # characters produced by macro expansion so far
        self._fresh = 0

    @staticmethod
    def _err(message: str, node: Node, code: str, accepted: str = "") -> ObligationError:
        return ObligationError(message, code=code, line=node.line, accepted=accepted)

    @staticmethod
    def _head_name(node: Node) -> str | None:
        if isinstance(node, SList) and node.items:
            first = node.items[0]
            if isinstance(first, Atom) and first.kind == Kind.SYMBOL:
                return first.text
        return None

    def _fresh_variable(self) -> str:
        """A bound-variable name no obligation can declare (the ``sop.`` prefix is reserved)."""
        self._fresh += 1
        return f"sop.v{self._fresh}"

    # --- names ---------------------------------------------------------------------------

    @ensure(lambda result: result != "")
    def fresh_name(self, node: Node, *, sort: bool = False) -> str:
        """Return the symbol ``node`` names, if it may be declared.

        Args:
            node: the would-be name.
            sort: whether a sort (rather than a function) is being declared.

        Returns:
            The name.

        Raises:
            ObligationError: not a symbol, already declared, or reserved.
        """
        if not isinstance(node, Atom) or node.kind != Kind.SYMBOL:
            raise self._err("expected a symbol to declare", node, "syntax")
        name = node.text
        taken = name in self.sorts or name in BUILTIN_SORTS if sort else name in self.funs
        if taken:
            raise self._err(f"`{name}` is already declared", node, "symbol")
        if name in RESERVED_WORDS or name in THEORY_SYMBOLS or name.startswith(RESERVED_PREFIXES):
            raise self._err(
                f"`{name}` is reserved and cannot be declared",
                node,
                "symbol",
                "names other than reserved words, theory symbols and `sop!`/`sop.` prefixes",
            )
        return name

    # --- sorts ---------------------------------------------------------------------------

    def sort(
        self, node: Node, params: frozenset[str] = frozenset(), *, reglan: bool = False
    ) -> str:
        """Check a sort expression and return its rendering.

        Args:
            node: the sort as read.
            params: sort parameters in scope (inside ``define-sort``).
            reglan: whether ``RegLan`` is accepted here (``define-fun`` results only).

        Returns:
            The normalized rendering.

        Raises:
            ObligationError: the sort is not part of the logic or malformed.
        """
        return self._sort(node, params, reglan=reglan)

    def _sort(
        self, node: Node, params: frozenset[str] = frozenset(), *, reglan: bool = False
    ) -> str:
        if isinstance(node, Atom):
            return self._sort_atom(node, params, reglan)
        items = node.items
        head = self._head_name(node)
        if (
            head == "_"
            and len(items) == 3
            and isinstance(items[1], Atom)
            and items[1].text == "BitVec"
        ):
            width = self._index(items[2])
            if not self.logic.bv or not 1 <= width <= self.limits.max_bv_width:
                raise self._err(
                    f"sort `(_ BitVec {width})` is not accepted in {self.logic.name}",
                    node,
                    "sort",
                    f"bit-vector logics, widths 1-{self.limits.max_bv_width}",
                )
            return f"(_ BitVec {width})"
        if head == "Array" and len(items) == 3 and self.logic.arrays:
            return f"(Array {self._sort(items[1], params)} {self._sort(items[2], params)})"
        if head is not None and self.sorts.get(head, 0) == len(items) - 1 > 0:
            args = " ".join(self._sort(s, params) for s in items[1:])
            return f"({self._symbol(head)} {args})"
        raise self._err(
            f"sort expression is not accepted in {self.logic.name}",
            node,
            "sort",
            self._sorts_accepted(),
        )

    def _sort_atom(self, node: Atom, params: frozenset[str], reglan: bool) -> str:
        name = node.text
        allowed = {
            "Bool": True,
            "Int": self.logic.ints,
            "Real": self.logic.reals,
            "String": self.logic.strings,
            "RegLan": self.logic.strings and reglan,
        }
        ok = allowed.get(name, False) or self.sorts.get(name, -1) == 0 or name in params
        if node.kind != Kind.SYMBOL or not ok:
            raise self._err(
                f"sort `{name}` is not accepted in {self.logic.name}",
                node,
                "sort",
                self._sorts_accepted(),
            )
        return self._symbol(name)

    def _sorts_accepted(self) -> str:
        out = ["Bool"]
        logic = self.logic
        out += ["Int"] * logic.ints + ["Real"] * logic.reals + ["String"] * logic.strings
        out += ["(_ BitVec n)"] * logic.bv + ["(Array S T)"] * logic.arrays
        out += ["declared sorts"] * logic.sorts
        return ", ".join(f"`{s}`" for s in out)

    def _index(self, node: Node) -> int:
        if not isinstance(node, Atom) or node.kind != Kind.NUMERAL:
            raise self._err("an index must be a numeral", node, "syntax")
        value = int(node.text)
        if value > self.limits.max_index:
            raise self._err(
                f"index `{value}` is too large",
                node,
                "too_large",
                f"at most {self.limits.max_index}",
            )
        return value
