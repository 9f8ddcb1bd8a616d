"""The SMT-LIB 2 command filter: the restricted script language of obligations.

A script is ``set-info`` lines, one ``set-logic`` (a logic of
:data:`~sop_verified.core.proofgate.logics.LOGICS`), then ``declare-sort``,
``define-sort``, ``declare-const``, ``declare-fun``, ``define-fun`` and
``assert`` commands, and at most one ``check-sat``, last. Every other command
(``set-option``, ``include``, ``exit``, ``push``, ``get-model``, ...) is
REJECTED with its name and line, before any solver sees the text. The
obligation holds iff the assertions are unsatisfiable (the SMT-LIB
convention). Top-level ``(! t :named n)`` names an assertion for the unsat
core; the solver gets the checked, re-rendered commands, never the original.
"""

from __future__ import annotations

from dataclasses import dataclass

from sop_verified.core.contracts import ensure, invariant
from sop_verified.core.proofgate.logics import LOGICS
from sop_verified.core.proofgate.sexpr import Atom, FilterLimits, Kind, Node, SList, read
from sop_verified.core.proofgate.sorts import render_symbol
from sop_verified.core.proofgate.terms import Signature
from sop_verified.errors import ObligationError

__all__ = ["ACCEPTED_COMMANDS", "CompiledObligation", "compile_smt2"]

ACCEPTED_COMMANDS = (
    "set-logic",
    "set-info",
    "declare-sort",
    "define-sort",
    "declare-const",
    "declare-fun",
    "define-fun",
    "assert",
    "check-sat",
)
_ACCEPTED = ", ".join(f"`{c}`" for c in ACCEPTED_COMMANDS)
_INFO_KEYWORDS = frozenset(
    {":status", ":source", ":smt-lib-version", ":category", ":license", ":notes"}
)


@dataclass(frozen=True, slots=True)
class CompiledObligation:
    """A checked obligation: its logic and its re-rendered declarations and assertions."""

    logic: str
    declarations: tuple[str, ...]
    assertions: tuple[str, ...]
    names: tuple[str | None, ...]
    status: str | None = None

    @property
    def named(self) -> bool:
        """Whether any assertion carries a ``:named`` label (unsat-core evidence)."""
        return any(n is not None for n in self.names)

    @ensure(lambda result: "(set-" not in result)
    def solver_script(self) -> str:
        """The text the solver parses: declarations and plain assertions, nothing else."""
        lines = list(self.declarations)
        lines += [f"(assert {a})" for a in self.assertions]
        return "\n".join(lines) + "\n"

    @ensure(lambda result: result.endswith("(check-sat)\n"))
    def smtlib_script(self) -> str:
        """A complete, normalized SMT-LIB script (for a second solver and for display)."""
        lines = [f"(set-logic {self.logic})", *self.declarations]
        for term, name in zip(self.assertions, self.names, strict=True):
            lines.append(
                f"(assert {term})"
                if name is None
                else f"(assert (! {term} :named {render_symbol(name)}))"
            )
        lines.append("(check-sat)")
        return "\n".join(lines) + "\n"


def _err(message: str, node: Node, code: str, accepted: str = "") -> ObligationError:
    return ObligationError(message, code=code, line=node.line, accepted=accepted)


@invariant(lambda self: self.sig is None or self.sig.logic.name in LOGICS)
class _Script:
    """The state of one script being filtered, command by command."""

    def __init__(self, limits: FilterLimits) -> None:
        self.limits = limits
        self.sig: Signature | None = None
        self.declarations: list[str] = []
        self.assertions: list[str] = []
        self.names: list[str | None] = []
        self.status: str | None = None
        self.done = False

    def command(self, node: Node) -> None:
        if not isinstance(node, SList) or not node.items:
            raise _err("expected a command `(name ...)`", node, "syntax", _ACCEPTED)
        head = node.items[0]
        name = head.text if isinstance(head, Atom) and head.kind == Kind.SYMBOL else ""
        if self.done:
            raise _err(
                f"command `{name}` after `check-sat`",
                node,
                "command",
                "`check-sat` only as the last command",
            )
        handler = {
            "set-logic": self._set_logic,
            "set-info": self._set_info,
            "check-sat": self._check_sat,
        }.get(name)
        if handler is not None:
            handler(node)
            return
        if name not in ACCEPTED_COMMANDS:
            raise _err(f"command `{name[:40] or '?'}` is not accepted", node, "command", _ACCEPTED)
        if self.sig is None:
            raise _err(f"command `{name}` before `set-logic`", node, "command", "`set-logic` first")
        self._declaration_or_assertion(name, node, self.sig)

    def _set_logic(self, node: SList) -> None:
        items = node.items
        if self.sig is not None:
            raise _err("a second `set-logic`", node, "command", "exactly one `set-logic`")
        if len(items) != 2 or not isinstance(items[1], Atom) or items[1].kind != Kind.SYMBOL:
            raise _err("malformed `set-logic`", node, "syntax", "`(set-logic NAME)`")
        logic = LOGICS.get(items[1].text)
        if logic is None:
            raise _err(
                f"logic `{items[1].text[:40]}` is not supported",
                node,
                "unsupported",
                ", ".join(f"`{n}`" for n in LOGICS),
            )
        self.sig = Signature(logic, self.limits)

    def _set_info(self, node: SList) -> None:
        items = node.items
        key = items[1] if len(items) > 1 else None
        if not (isinstance(key, Atom) and key.text in _INFO_KEYWORDS and len(items) <= 3):
            raise _err(
                "`set-info` with an unknown keyword or value",
                node,
                "command",
                ", ".join(f"`{k}`" for k in sorted(_INFO_KEYWORDS)),
            )
        value = items[2] if len(items) == 3 else None
        if key.text == ":status":
            if not (isinstance(value, Atom) and value.text in ("sat", "unsat", "unknown")):
                raise _err("`:status` must be `sat`, `unsat` or `unknown`", node, "syntax")
            self.status = value.text

    def _check_sat(self, node: SList) -> None:
        if len(node.items) != 1:
            raise _err("malformed `check-sat`", node, "syntax", "`(check-sat)`")
        if self.sig is None:
            raise _err("`check-sat` before `set-logic`", node, "command", "`set-logic` first")
        self.done = True

    def _declaration_or_assertion(self, name: str, node: SList, sig: Signature) -> None:
        {
            "declare-sort": self._declare_sort,
            "define-sort": self._define_sort,
            "declare-const": self._declare_const,
            "declare-fun": self._declare_fun,
            "define-fun": self._define_fun,
            "assert": self._assert,
        }[name](node, sig)

    def _declare_sort(self, node: SList, sig: Signature) -> None:
        items = node.items
        if not sig.logic.sorts:
            raise _err(
                f"`declare-sort` in {sig.logic.name}",
                node,
                "sort",
                "logics with uninterpreted sorts",
            )
        if len(items) != 3 or not (isinstance(items[2], Atom) and items[2].text == "0"):
            raise _err("malformed `declare-sort`", node, "syntax", "`(declare-sort Name 0)`")
        sort = sig.fresh_name(items[1], sort=True)
        sig.sorts[sort] = 0
        self.declarations.append(f"(declare-sort {render_symbol(sort)} 0)")

    def _define_sort(self, node: SList, sig: Signature) -> None:
        items = node.items
        if len(items) != 4 or not isinstance(items[2], SList):
            raise _err(
                "malformed `define-sort`", node, "syntax", "`(define-sort Name (params) Sort)`"
            )
        sort = sig.fresh_name(items[1], sort=True)
        params = [sig.fresh_name(p, sort=True) for p in items[2].items]
        if len(set(params)) != len(params):
            raise _err("`define-sort` repeats a parameter", node, "syntax")
        body = sig.sort(items[3], frozenset(params))
        sig.sorts[sort] = len(params)
        rendered = " ".join(render_symbol(p) for p in params)
        self.declarations.append(f"(define-sort {render_symbol(sort)} ({rendered}) {body})")

    def _declare_const(self, node: SList, sig: Signature) -> None:
        items = node.items
        if len(items) != 3:
            raise _err("malformed `declare-const`", node, "syntax", "`(declare-const name Sort)`")
        name = sig.fresh_name(items[1])
        sort = sig.sort(items[2])
        sig.funs[name] = 0
        self.declarations.append(f"(declare-const {render_symbol(name)} {sort})")

    def _declare_fun(self, node: SList, sig: Signature) -> None:
        items = node.items
        if len(items) != 4 or not isinstance(items[2], SList):
            raise _err(
                "malformed `declare-fun`", node, "syntax", "`(declare-fun name (Sort ...) Sort)`"
            )
        if items[2].items and not sig.logic.uf:
            raise _err(
                f"uninterpreted function in {sig.logic.name}", node, "symbol", "logics with UF"
            )
        name = sig.fresh_name(items[1])
        args = " ".join(sig.sort(s) for s in items[2].items)
        result = sig.sort(items[3])
        sig.funs[name] = len(items[2].items)
        self.declarations.append(f"(declare-fun {render_symbol(name)} ({args}) {result})")

    def _define_fun(self, node: SList, sig: Signature) -> None:
        items = node.items
        if len(items) != 5 or not isinstance(items[2], SList):
            raise _err(
                "malformed `define-fun`",
                node,
                "syntax",
                "`(define-fun name ((x Sort) ...) Sort body)`",
            )
        name = sig.fresh_name(items[1])
        params: list[tuple[str, Node]] = []
        for param in items[2].items:
            if not isinstance(param, SList) or len(param.items) != 2:
                raise _err("malformed `define-fun` parameter", param, "syntax", "`(x Sort)`")
            pname = sig.fresh_name(param.items[0])
            if any(pname == p for p, _ in params):
                raise _err(f"`define-fun` repeats the parameter `{pname}`", param, "syntax")
            sig.sort(param.items[1])
            params.append((pname, param.items[1]))
        sig.sort(items[3], reglan=True)
        sig.define(name, params, items[4])  # expanded at each use; never sent as a define-fun

    def _assert(self, node: SList, sig: Signature) -> None:
        items = node.items
        if len(items) != 2:
            raise _err("malformed `assert`", node, "syntax", "`(assert term)`")
        if len(self.assertions) >= self.limits.max_assertions:
            raise _err(
                f"more than {self.limits.max_assertions} assertions",
                node,
                "too_large",
                f"at most {self.limits.max_assertions}",
            )
        term, label = self._named(items[1], sig)
        self.assertions.append(sig.term(term))
        self.names.append(label)

    def _named(self, node: Node, sig: Signature) -> tuple[Node, str | None]:
        if not (isinstance(node, SList) and node.items and isinstance(node.items[0], Atom)):
            return node, None
        if node.items[0].text != "!" or node.items[0].kind != Kind.SYMBOL:
            return node, None
        items = node.items
        label = items[3] if len(items) == 4 else None
        ok = isinstance(items[2], Atom) and items[2].text == ":named" if len(items) == 4 else False
        if not ok or not isinstance(label, Atom) or label.kind != Kind.SYMBOL:
            raise _err(
                "annotation on an assertion is not accepted",
                node,
                "annotation",
                "`(assert (! term :named name))`",
            )
        if label.text in self.names or label.text in sig.funs:
            raise _err(f"name `{label.text}` is used twice", label, "annotation", "distinct names")
        return items[1], label.text

    def result(self) -> CompiledObligation:
        if self.sig is None:
            raise ObligationError(
                "the script has no `set-logic`", code="command", accepted="`set-logic` first"
            )
        return CompiledObligation(
            self.sig.logic.name,
            tuple(self.declarations),
            tuple(self.assertions),
            tuple(self.names),
            self.status,
        )


@ensure(lambda result: len(result.assertions) == len(result.names))
def compile_smt2(source: str, limits: FilterLimits | None = None) -> CompiledObligation:
    """Filter an SMT-LIB 2 obligation script and render what the solver may see.

    Args:
        source: untrusted SMT-LIB 2 text.
        limits: the caps (default :class:`FilterLimits`).

    Returns:
        The checked obligation.

    Raises:
        ObligationError: the first problem found, with its code and line:
            a command outside the accepted set, an unsupported logic, an
            unknown symbol, a wrong arity, a nonlinear term, a quantifier in a
            quantifier-free logic, malformed syntax, or a cap exceeded.
    """
    limits = limits or FilterLimits()
    script = _Script(limits)
    for node in read(source, limits):
        script.command(node)
    return script.result()
