"""Checking and re-rendering SMT-LIB terms against one logic.

The solver never sees the submitter's text: every term is checked here (every
symbol declared, bound or a theory symbol of the logic; arities; linearity;
quantifiers only where the logic has them; numerals only where it has
arithmetic) and printed back in a normal form. A term this module did not
print cannot reach a solver.

Two normalizations keep obligations from touching each other inside a reused
solver context: every bound variable is renamed to a fresh ``sop.v<n>`` (no
obligation can declare that prefix, so nothing can be captured), and every
``define-fun`` is expanded at its uses as a ``let`` (z3 keeps each parsed
``define-fun`` in its context for good and shows it in later models, so
none reaches it). Expansion is capped (:attr:`FilterLimits.max_expansion`).
"""

from __future__ import annotations

from collections.abc import Mapping

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.proofgate.logics import LOGICS, THEORY_SYMBOLS, TheorySymbol
from sop_verified.core.proofgate.sexpr import Atom, Kind, Node, SList
from sop_verified.core.proofgate.sorts import RESERVED_WORDS, Declarations

__all__ = ["Signature"]

Scope = Mapping[str, str]  # a bound variable's name in the source -> its rendered name
_EMPTY: Scope = {}
_CONSTANT_NEEDS = {
    Kind.NUMERAL: ("ints", "reals", "arithmetic logics"),
    Kind.DECIMAL: ("reals", "reals", "real arithmetic logics"),
    Kind.HEX: ("bv", "bv", "bit-vector logics"),
    Kind.BINARY: ("bv", "bv", "bit-vector logics"),
    Kind.STRING: ("strings", "strings", "string logics"),
}


def _render_atom(atom: Atom) -> str:
    if atom.kind == Kind.STRING:
        return '"' + atom.text.replace('"', '""') + '"'
    return atom.text


def _is_numeric_constant(node: Node) -> bool:
    if isinstance(node, Atom):
        return node.kind in (Kind.NUMERAL, Kind.DECIMAL)
    head = Declarations._head_name(node)
    args = node.items[1:]
    if head == "-" and len(args) == 1:
        return _is_numeric_constant(args[0])
    return head == "/" and len(args) == 2 and all(_is_numeric_constant(a) for a in args)


def _is_zero(node: Node) -> bool:
    return isinstance(node, Atom) and set(node.text) <= {"0", "."}


@invariant(lambda self: self.logic.name in LOGICS and self.expanded >= 0)
class Signature(Declarations):
    """An obligation's declarations plus the checking and printing of its terms."""

    @require(lambda params: len({p for p, _ in params}) == len(params))
    def define(self, name: str, params: list[tuple[str, Node]], body: Node) -> None:
        """Record ``define-fun name params body`` as a macro (expanded at each use).

        Args:
            name: the (already checked) function name.
            params: each parameter's name and sort (sorts checked by the caller).
            body: the body term.

        Raises:
            ObligationError: the body does not check, or its expansion is too large.
        """
        renamed = {p: self._fresh_variable() for p, _ in params}
        text = self._term(body, renamed)
        self._charge(len(text), body)
        self.macros[name] = (tuple(renamed[p] for p, _ in params), text)
        self.funs[name] = len(params)

    def term(self, node: Node, bound: Scope | None = None) -> str:
        """Check a term in the scope of ``bound`` variables and return its rendering.

        Args:
            node: the term as read.
            bound: variables bound around it, by source name (their rendered names).

        Returns:
            The normalized rendering.

        Raises:
            ObligationError: an unknown symbol, a wrong arity, a nonlinear term, a
                quantifier in a quantifier-free logic, malformed syntax, or an
                expansion beyond the cap.
        """
        return self._term(node, bound or _EMPTY)

    def _charge(self, size: int, node: Node) -> None:
        self.expanded += size
        if self.expanded > self.limits.max_expansion:
            raise self._err(
                f"`define-fun` expansion exceeds {self.limits.max_expansion} characters",
                node,
                "too_large",
                f"at most {self.limits.max_expansion} characters after expanding definitions",
            )

    def _term(self, node: Node, bound: Scope) -> str:
        if isinstance(node, Atom):
            return self._atom_term(node, bound)
        if not node.items:
            raise self._err("empty list `()` is not a term", node, "syntax")
        head = node.items[0]
        if isinstance(head, SList):
            return self._indexed_application(node, head, bound)
        if head.kind != Kind.SYMBOL:
            raise self._err(f"`{head.text}` cannot head a term", node, "syntax")
        word = head.text
        if word == "let":
            return self._let(node, bound)
        if word in ("forall", "exists"):
            return self._quantifier(node, bound)
        if word == "_":
            return self._indexed_constant(node)
        return self._application(node, word, bound)

    def _atom_term(self, node: Atom, bound: Scope) -> str:
        kind = node.kind
        need = _CONSTANT_NEEDS.get(kind)
        if need is not None:
            if not (getattr(self.logic, need[0]) or getattr(self.logic, need[1])):
                raise self._err(
                    f"{kind} `{node.text[:40]}` is not part of {self.logic.name}",
                    node,
                    "sort",
                    need[2],
                )
            return _render_atom(node)
        if kind != Kind.SYMBOL:
            raise self._err(f"`{node.text}` is not a term", node, "syntax")
        name = node.text
        if name in bound:
            return bound[name]
        if self.funs.get(name) == 0:
            return self._expand(name, (), node, bound)
        theory = THEORY_SYMBOLS.get(name)
        if theory is not None and theory.max_args == 0 and theory.theory in self.logic.theories:
            return name
        raise self._unknown(node, name, 0)

    def _expand(self, name: str, args: tuple[Node, ...], node: Node, bound: Scope) -> str:
        macro = self.macros.get(name)
        if macro is None:
            rendered = " ".join(self._term(a, bound) for a in args)
            return f"({self._symbol(name)} {rendered})" if args else self._symbol(name)
        params, body = macro
        self._charge(len(body), node)
        if not args:
            return body
        bindings = " ".join(
            f"({p} {self._term(a, bound)})" for p, a in zip(params, args, strict=True)
        )
        return f"(let ({bindings}) {body})"

    def _unknown(self, node: Node, name: str, nargs: int) -> Exception:
        arity = self.funs.get(name)
        if arity is not None:
            return self._err(f"`{name}` takes {arity} arguments, not {nargs}", node, "arity")
        theory = THEORY_SYMBOLS.get(name)
        if theory is not None and theory.theory in self.logic.theories:
            bounds = f"{theory.min_args}" + (
                f"-{theory.max_args}" if theory.max_args != theory.min_args else ""
            )
            if theory.max_args is None:
                bounds = f"at least {theory.min_args}"
            return self._err(f"`{name}` takes {bounds} arguments, not {nargs}", node, "arity")
        if name in RESERVED_WORDS:
            return self._err(f"`{name}` is not accepted in a term", node, "syntax")
        return self._err(
            f"unknown symbol `{name}` for logic {self.logic.name}",
            node,
            "symbol",
            "declared symbols, bound variables, the logic's theory symbols (spec/OBLIGATIONS.md)",
        )

    def _application(self, node: SList, name: str, bound: Scope) -> str:
        args = node.items[1:]
        if name in bound:
            raise self._err(f"bound variable `{name}` cannot be applied", node, "arity")
        arity = self.funs.get(name)
        if arity is not None:
            if arity != len(args) or arity == 0:
                raise self._unknown(node, name, len(args))
            return self._expand(name, args, node, bound)
        theory = THEORY_SYMBOLS.get(name)
        if theory is None or theory.theory not in self.logic.theories or theory.indices:
            raise self._unknown(node, name, len(args))
        self._theory_arguments(node, name, theory, args)
        rendered = " ".join(self._term(a, bound) for a in args)
        return f"({name} {rendered})"

    def _theory_arguments(
        self, node: Node, name: str, theory: TheorySymbol, args: tuple[Node, ...]
    ) -> None:
        if len(args) < theory.min_args or (
            theory.max_args is not None and len(args) > theory.max_args
        ):
            raise self._unknown(node, name, len(args))
        if theory.linear and sum(not _is_numeric_constant(a) for a in args) > 1:
            raise self._err(
                f"nonlinear `{name}` in {self.logic.name}",
                node,
                "nonlinear",
                "multiplication where at most one factor is not a numeric constant",
            )
        if theory.constant_divisor and not all(
            _is_numeric_constant(a) and not _is_zero(a) for a in args[1:]
        ):
            raise self._err(
                f"`{name}` by a term that is not a nonzero numeric constant",
                node,
                "nonlinear",
                "division by nonzero numeric constants only (linear arithmetic)",
            )

    def _indexed_application(self, node: SList, head: SList, bound: Scope) -> str:
        items = head.items
        name = items[1].text if len(items) > 1 and isinstance(items[1], Atom) else ""
        theory = THEORY_SYMBOLS.get(name)
        if (
            self._head_name(head) != "_"
            or theory is None
            or not theory.indices
            or theory.theory not in self.logic.theories
        ):
            raise self._err(
                "unknown indexed function symbol", head, "symbol", self._indexed_accepted()
            )
        if len(items) != 2 + theory.indices:
            raise self._err(f"`{name}` takes {theory.indices} indices", head, "arity")
        indices = " ".join(str(self._index(i)) for i in items[2:])
        args = node.items[1:]
        self._theory_arguments(node, name, theory, args)
        rendered = " ".join(self._term(a, bound) for a in args)
        return f"((_ {name} {indices}) {rendered})"

    def _indexed_accepted(self) -> str:
        names = sorted(
            n for n, t in THEORY_SYMBOLS.items() if t.indices and t.theory in self.logic.theories
        )
        return ", ".join(f"`{n}`" for n in names) or f"none in {self.logic.name}"

    def _indexed_constant(self, node: SList) -> str:
        items = node.items
        name = items[1].text if len(items) == 3 and isinstance(items[1], Atom) else ""
        digits = name[2:]
        if not (self.logic.bv and name.startswith("bv") and digits.isdigit() and digits.isascii()):
            raise self._err(
                "unknown indexed constant", node, "symbol", "`(_ bvN w)` in bit-vector logics"
            )
        width = self._index(items[2])
        too_long = len(digits) > self.limits.max_numeral_digits or (
            len(digits) > 1 and digits[0] == "0"
        )
        if not 1 <= width <= self.limits.max_bv_width or too_long:
            raise self._err(
                f"bit-vector constant `(_ {name} {width})` is out of range", node, "too_large"
            )
        return f"(_ {name} {width})"

    def _binder(self, node: Node, seen: dict[str, str]) -> str:
        if not isinstance(node, Atom) or node.kind != Kind.SYMBOL:
            raise self._err("expected a variable name", node, "syntax")
        if node.text in RESERVED_WORDS or node.text in THEORY_SYMBOLS:
            raise self._err(f"`{node.text}` cannot be a variable name", node, "symbol")
        if node.text in seen:
            raise self._err(f"`{node.text}` is bound twice in one binder list", node, "syntax")
        seen[node.text] = self._fresh_variable()
        return seen[node.text]

    def _let(self, node: SList, bound: Scope) -> str:
        items = node.items
        if len(items) != 3 or not isinstance(items[1], SList) or not items[1].items:
            raise self._err("malformed `let`", node, "syntax", "`(let ((name term) ...) body)`")
        names: dict[str, str] = {}
        parts: list[str] = []
        for binding in items[1].items:
            if not isinstance(binding, SList) or len(binding.items) != 2:
                raise self._err("malformed `let` binding", binding, "syntax", "`(name term)`")
            value = self._term(binding.items[1], bound)  # parallel: in the outer scope
            parts.append(f"({self._binder(binding.items[0], names)} {value})")
        body = self._term(items[2], {**bound, **names})
        return f"(let ({' '.join(parts)}) {body})"

    def _quantifier(self, node: SList, bound: Scope) -> str:
        items = node.items
        word = items[0].text if isinstance(items[0], Atom) else ""
        if not self.logic.quantifiers:
            raise self._err(
                f"quantifier `{word}` in quantifier-free logic {self.logic.name}",
                node,
                "quantifier",
                "quantifiers only in LIA, LRA, UF, UFLIA",
            )
        if len(items) != 3 or not isinstance(items[1], SList) or not items[1].items:
            raise self._err(
                f"malformed `{word}`", node, "syntax", f"`({word} ((name Sort) ...) body)`"
            )
        names: dict[str, str] = {}
        parts: list[str] = []
        for binder in items[1].items:
            if not isinstance(binder, SList) or len(binder.items) != 2:
                raise self._err("malformed quantifier binder", binder, "syntax", "`(name Sort)`")
            sort = self._sort(binder.items[1])
            parts.append(f"({self._binder(binder.items[0], names)} {sort})")
        body = self._quantifier_body(items[2], {**bound, **names})
        return f"({word} ({' '.join(parts)}) {body})"

    def _quantifier_body(self, node: Node, bound: Scope) -> str:
        if not isinstance(node, SList) or self._head_name(node) != "!":
            return self._term(node, bound)
        items = node.items
        if len(items) < 4 or len(items) % 2 != 0:
            raise self._err(
                "malformed annotation", node, "annotation", "`(! body :pattern (terms) ...)`"
            )
        out = [self._term(items[1], bound)]
        for key, value in zip(items[2::2], items[3::2], strict=True):
            text = key.text if isinstance(key, Atom) else ""
            if text == ":pattern" and isinstance(value, SList) and value.items:
                out.append(":pattern (" + " ".join(self._term(t, bound) for t in value.items) + ")")
            elif text == ":qid" and isinstance(value, Atom) and value.kind == Kind.SYMBOL:
                out.append(f":qid {self._symbol(value.text)}")
            else:
                raise self._err(
                    "annotation is not accepted here",
                    key,
                    "annotation",
                    "`:pattern (terms)`, `:qid name`",
                )
        return f"(! {' '.join(out)})"

    @ensure(lambda result: result >= 0)
    def defined_count(self) -> int:
        """How many ``define-fun`` macros are recorded (diagnostics)."""
        return len(self.macros)
