"""The structured JSON obligation ``{logic, declarations, assumptions, goal}``.

It holds iff ``assumptions ∧ ¬goal`` is unsatisfiable. Each sort and term
string is read as exactly one S-expression by the same reader, with the same
caps, and printed back; the pieces are assembled into an SMT-LIB script
(one piece per line, assumptions named ``sop.assumption.<i>``, the negated
goal ``sop.goal``) that then goes through the full command filter. Nothing is
ever evaluated or spliced as text.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from sop_verified.core.contracts import ensure, require
from sop_verified.core.proofgate.sexpr import Atom, FilterLimits, Node, read
from sop_verified.core.proofgate.smtlib import CompiledObligation, compile_smt2
from sop_verified.core.proofgate.sorts import render_symbol
from sop_verified.errors import ObligationError
from sop_verified.tools.strict_json import DuplicateKeyError, loads_unique_keys

__all__ = ["GOAL_NAME", "MAX_ASSUMPTIONS", "assumption_name", "compile_structured"]

GOAL_NAME = "sop.goal"
MAX_ASSUMPTIONS = 256
_KEYS = frozenset({"logic", "declarations", "assumptions", "goal", "sorts"})
_SHAPE = (
    "an object {`logic`: string, `declarations`: {name: sort | {`args`: [sort], `result`: sort}}, "
    "`assumptions`: [term], `goal`: term, optional `sorts`: [name]}"
)


@require(lambda index: index >= 0)
def assumption_name(index: int) -> str:
    """The ``:named`` label of the assumption at ``index`` (unsat-core evidence)."""
    return f"sop.assumption.{index}"


def _structure(message: str, where: str) -> ObligationError:
    return ObligationError(message, code="structure", where=where, accepted=_SHAPE)


def _one(text: Any, where: str, limits: FilterLimits) -> str:
    """Read one S-expression from a JSON string and print it back on one line."""
    if not isinstance(text, str):
        raise _structure(f"expected a string, got `{type(text).__name__}`", where)
    try:
        nodes = read(text, limits)
    except ObligationError as exc:
        where = f"{where} line {exc.line}" if exc.line is not None else where
        raise ObligationError(
            exc.message, code=exc.code, where=where, accepted=exc.accepted
        ) from None
    if len(nodes) != 1:
        raise _structure(f"expected exactly one S-expression, found {len(nodes)}", where)
    return _print(nodes[0])


def _print(node: Node) -> str:
    if isinstance(node, Atom):
        if node.kind == "string":
            return '"' + node.text.replace('"', '""') + '"'
        return render_symbol(node.text) if node.kind == "symbol" else node.text
    return "(" + " ".join(_print(n) for n in node.items) + ")"


def _load(source: str) -> dict[str, Any]:
    try:
        data = orjson.loads(source)
    except orjson.JSONDecodeError as exc:
        raise ObligationError(
            f"obligation is not JSON: {exc}", code="syntax", accepted=_SHAPE
        ) from None
    _refuse_duplicate_keys(source)
    if not isinstance(data, dict):
        raise _structure(f"expected a JSON object, got `{type(data).__name__}`", "obligation")
    unknown = sorted(set(data) - _KEYS)
    missing = sorted({"logic", "declarations", "assumptions", "goal"} - set(data))
    if unknown or missing:
        raise _structure(f"unknown keys {unknown} or missing keys {missing}", "obligation")
    return data


def _refuse_duplicate_keys(source: str) -> None:
    """Refuse an object that names a key twice, at any depth.

    orjson (like ``json``) keeps the last of two equal keys, so two ``goal``
    keys would make the obligation mean whatever the last one says; the text
    must mean one thing to every reader, as a policy document must.
    """
    try:
        loads_unique_keys(source)
    except DuplicateKeyError as exc:
        raise ObligationError(
            f"duplicate key `{exc.key[:40]}`; an object names each key once",
            code="duplicate_key",
            where=_field(exc.path),
            accepted=_SHAPE,
        ) from None
    except (ValueError, RecursionError) as exc:  # orjson read it; fail closed all the same
        raise ObligationError(
            f"obligation is not JSON: {type(exc).__name__}", code="syntax", accepted=_SHAPE
        ) from None


def _field(path: tuple[str | int, ...]) -> str:
    """A JSON place the way the other errors name it: ``declarations.f.args``, ``sorts[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part[:40]}" if out else part[:40])
    return out or "obligation"


def _declarations(data: dict[str, Any], limits: FilterLimits) -> tuple[list[str], list[str]]:
    """Return the script lines and their labels for sorts and declarations."""
    lines: list[str] = []
    labels: list[str] = []
    sorts = data.get("sorts", [])
    if not isinstance(sorts, list):
        raise _structure("`sorts` must be a list of names", "sorts")
    for i, name in enumerate(sorts):
        lines.append(f"(declare-sort {_one(name, f'sorts[{i}]', limits)} 0)")
        labels.append(f"sorts[{i}]")
    decls = data["declarations"]
    if not isinstance(decls, dict):
        raise _structure("`declarations` must be an object", "declarations")
    for name, sort in decls.items():
        where = f"declarations.{name[:40]}"
        symbol = render_symbol(_name(name, where))
        if isinstance(sort, dict):
            if (
                set(sort) != {"args", "result"}
                or not isinstance(sort["args"], list)
                or not sort["args"]
            ):
                raise _structure("a function needs `args` (a non-empty list) and `result`", where)
            args = " ".join(
                _one(s, f"{where}.args[{j}]", limits) for j, s in enumerate(sort["args"])
            )
            lines.append(
                f"(declare-fun {symbol} ({args}) {_one(sort['result'], f'{where}.result', limits)})"
            )
        else:
            lines.append(f"(declare-const {symbol} {_one(sort, where, limits)})")
        labels.append(where)
    return lines, labels


def _name(name: str, where: str) -> str:
    if (
        not name
        or len(name) > 256
        or "|" in name
        or "\\" in name
        or not name.isprintable()
        or not name.isascii()
    ):
        raise _structure(f"declaration name `{name[:40]}` is not a printable SMT-LIB symbol", where)
    return name


@ensure(lambda result: result.names[-1] == GOAL_NAME)
def compile_structured(source: str, limits: FilterLimits | None = None) -> CompiledObligation:
    """Check a structured JSON obligation and compile it to a filtered SMT-LIB script.

    Args:
        source: untrusted JSON text.
        limits: the caps (default :class:`FilterLimits`), applied to the whole
            text and to each sort and term string.

    Returns:
        The checked obligation: assertions are the assumptions, then the negated goal.

    Raises:
        ObligationError: not JSON, the wrong shape, or any problem the SMT-LIB
            filter finds; ``where`` names the JSON field.
    """
    limits = limits or FilterLimits()
    if (
        len(source) > limits.max_bytes
        or len(source.encode("utf-8", "surrogatepass")) > limits.max_bytes
    ):
        raise ObligationError(
            f"obligation is {len(source)} characters long",
            code="too_large",
            accepted=f"at most {limits.max_bytes} bytes",
        )
    data = _load(source)
    logic = data["logic"]
    if not isinstance(logic, str) or not logic.isascii() or not logic.replace("_", "").isalnum():
        raise _structure("`logic` must be a logic name", "logic")
    lines, labels = [f"(set-logic {logic})"], ["logic"]
    decl_lines, decl_labels = _declarations(data, limits)
    lines += decl_lines
    labels += decl_labels
    assumptions = data["assumptions"]
    if not isinstance(assumptions, list) or len(assumptions) > MAX_ASSUMPTIONS:
        raise _structure(
            f"`assumptions` must be a list of at most {MAX_ASSUMPTIONS} terms", "assumptions"
        )
    for i, term in enumerate(assumptions):
        lines.append(
            f"(assert (! {_one(term, f'assumptions[{i}]', limits)} :named {assumption_name(i)}))"
        )
        labels.append(f"assumptions[{i}]")
    lines.append(f"(assert (! (not {_one(data['goal'], 'goal', limits)}) :named {GOAL_NAME}))")
    labels.append("goal")
    return _compile_lines(lines, labels, limits)


def _compile_lines(lines: list[str], labels: list[str], limits: FilterLimits) -> CompiledObligation:
    try:
        return compile_smt2("\n".join(lines) + "\n", _script_limits(limits, len(lines)))
    except ObligationError as exc:
        where = (
            labels[exc.line - 1]
            if exc.line is not None and 0 < exc.line <= len(labels)
            else "obligation"
        )
        raise ObligationError(
            exc.message, code=exc.code, where=where, accepted=exc.accepted
        ) from None


def _script_limits(limits: FilterLimits, nlines: int) -> FilterLimits:
    """The assembled script may nest two levels deeper (`assert`, `!`, `not`) than its pieces."""
    return replace(
        limits, max_depth=min(limits.max_depth + 3, 400), max_bytes=limits.max_bytes + 64 * nlines
    )
