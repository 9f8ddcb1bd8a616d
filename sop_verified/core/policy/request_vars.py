"""A request as Z3 variables: well-formedness, binding to a concrete request, decoding a model.

Strings: Z3 holds characters up to U+2FFFF; :func:`z3_string` maps every
Python string injectively into Z3 strings (printable ASCII as itself, other
characters below U+2FFFF as themselves, U+2FFFF and above as the marker
U+2FFFF followed by six hex digits), so two Python strings are equal exactly
when their images are. Well-formedness (:meth:`RequestVars.well_formed`)
mirrors :func:`~sop_verified.core.request.parse_request`: a known action, a
known channel, a well-formed resource path, a principal id, 64-bit ints and
strings of at most 256 characters. Decoding a model renames unreadable free
context strings to fresh printable ones; the language only compares strings
for equality, so the request behaves the same (spec/POLICY_LANGUAGE.md
section 6) and counterexamples stay readable and JSON-safe.
"""

from __future__ import annotations

import re
import string
from typing import Any, Final

import z3

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.policy.typecheck import CHANNELS
from sop_verified.core.request import (
    ACTIONS,
    CONTEXT_SCHEMA,
    INT_MAX,
    INT_MIN,
    MAX_STRING,
    PRINCIPAL_PATTERN,
    AttrType,
    Request,
)
from sop_verified.tools.paths import SEGMENT_ALPHABET, z3_well_formed_path

__all__ = ["RequestVars", "z3_set", "z3_string"]

_MARK: Final = 0x2FFFF
_ESCAPED: Final = re.compile(r"\\u\{([0-9a-fA-F]{1,6})\}")
_MARKED: Final = re.compile(chr(_MARK) + "([0-9a-f]{6})")
_ATTRS: Final = ("principal", "action", "resource", "channel")


def _char(c: str) -> str:
    o = ord(c)
    if 0x20 <= o <= 0x7E and c != "\\":
        return c
    if o < _MARK:
        return f"\\u{{{o:x}}}"
    return f"\\u{{{_MARK:x}}}{o:06x}"


def z3_string(s: str) -> Any:
    """The Z3 string literal standing for the Python string ``s`` (injective).

    Args:
        s: any Python string.

    Returns:
        A Z3 string value.
    """
    return z3.StringVal("".join(_char(c) for c in s))


def z3_set(values: frozenset[str]) -> Any:
    """The Z3 set (an array String -> Bool) holding exactly ``values``.

    Args:
        values: the strings.

    Returns:
        A Z3 set term, built in sorted order so equal sets give equal terms.
    """
    term = z3.EmptySet(z3.StringSort())
    for v in sorted(values):
        term = z3.SetAdd(term, z3_string(v))
    return term


def _unmark(text: str) -> str:
    """Undo the marker mapping of characters Z3 cannot hold (U+2FFFF and above)."""
    return _MARKED.sub(lambda m: chr(int(m.group(1), 16)), text)


def _decode_string(value: Any) -> str:
    """A Z3 string value back to Python (inverse of :func:`z3_string`)."""
    text = _unmark(_ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), value.as_string()))
    if z3.is_true(z3.simplify(z3_string(text) == value)):
        return text
    n = z3.simplify(z3.Length(value)).as_long()  # rare: decode code point by code point
    codes = [z3.simplify(z3.StrToCode(z3.SubString(value, i, 1))).as_long() for i in range(n)]
    return _unmark("".join(chr(c) for c in codes))


_PRINCIPAL_RE: list[Any] = []
_SEG_CHAR: list[Any] = []


def _seg_char() -> Any:
    """One character of SEGMENT_ALPHABET as a Z3 regex (ranges for letters and digits)."""
    if not _SEG_CHAR:
        others = sorted(set(SEGMENT_ALPHABET) - set(string.ascii_letters + string.digits))
        _SEG_CHAR.append(
            z3.Union(
                z3.Range("a", "z"),
                z3.Range("A", "Z"),
                z3.Range("0", "9"),
                *[z3.Re(z3.StringVal(c)) for c in others],
            )
        )
    return _SEG_CHAR[0]


def _principal_regex() -> Any:
    """PRINCIPAL_PATTERN (``[a-z][a-z0-9_-]{0,63}``) as a Z3 regex."""
    if not _PRINCIPAL_RE:
        if PRINCIPAL_PATTERN != "[a-z][a-z0-9_-]{0,63}":
            raise RuntimeError("the principal grammar changed; update its Z3 regex here")
        tail = z3.Union(z3.Range("a", "z"), z3.Range("0", "9"), z3.Re("_"), z3.Re("-"))
        _PRINCIPAL_RE.append(z3.Concat(z3.Range("a", "z"), z3.Loop(tail, 0, 63)))
    return _PRINCIPAL_RE[0]


def _fresh(name: str, kind: AttrType) -> Any:
    if kind is AttrType.INT:
        return z3.Int(name)
    if kind is AttrType.STRING:
        return z3.String(name)
    if kind is AttrType.BOOL:
        return z3.Bool(name)
    return z3.Const(name, z3.SetSort(z3.StringSort()))


def _concrete(kind: AttrType, value: Any) -> Any:
    if kind is AttrType.INT:
        return z3.IntVal(value)
    if kind is AttrType.STRING:
        return z3_string(value)
    if kind is AttrType.BOOL:
        return z3.BoolVal(value)
    return z3_set(frozenset(value))


_DEFAULTS: Final = {
    AttrType.INT: 0,
    AttrType.STRING: "",
    AttrType.BOOL: False,
    AttrType.SET: frozenset(),
}


@invariant(lambda self: set(self.context) == set(CONTEXT_SCHEMA), "one variable per attribute")
class RequestVars:
    """The Z3 variables of one symbolic request."""

    __slots__ = ("action", "channel", "context", "present", "principal", "resource")

    def __init__(self, prefix: str = "") -> None:
        """Declare the variables, named ``<prefix><attribute>``.

        Args:
            prefix: distinguishes several symbolic requests in one formula.
        """
        self.principal = z3.String(prefix + "principal")
        self.action = z3.String(prefix + "action")
        self.resource = z3.String(prefix + "resource")
        self.channel = z3.String(prefix + "channel")
        self.context = {n: _fresh(f"{prefix}context.{n}", k) for n, k in CONTEXT_SCHEMA.items()}
        self.present = {n: z3.Bool(f"{prefix}has.{n}") for n in CONTEXT_SCHEMA}

    @require(lambda name: name in _ATTRS, "a request attribute")
    def attribute(self, name: str) -> Any:
        """The variable of ``principal``, ``action``, ``resource`` or ``channel``.

        Args:
            name: the attribute.

        Returns:
            Its Z3 string variable.
        """
        return {
            "principal": self.principal,
            "action": self.action,
            "resource": self.resource,
            "channel": self.channel,
        }[name]

    def well_formed(self) -> Any:
        """The constraint that these variables are a request ``parse_request`` accepts.

        It is :meth:`well_formed_core` and :meth:`well_formed_bounds`.

        Returns:
            A Z3 Bool.
        """
        return z3.And(self.well_formed_core(), self.well_formed_bounds())

    def well_formed_core(self) -> Any:
        """The cheap part of well-formedness: known action and channel, the path and principal
        grammars, 64-bit ints.

        It leaves out the `.`/`..` segment exclusion and the length bounds, which
        make Z3 slow; analyses solve with this first and add
        :meth:`well_formed_bounds` only when a decoded model breaks them.

        Returns:
            A Z3 Bool implied by :meth:`well_formed`.
        """
        seg = z3.Plus(_seg_char())
        parts = [
            z3.Or([self.action == z3.StringVal(a) for a in sorted(ACTIONS)]),
            z3.Or([self.channel == z3.StringVal(c) for c in sorted(CHANNELS)]),
            z3.InRe(self.resource, z3.Concat(seg, z3.Star(z3.Concat(z3.Re("/"), seg)))),
            z3.InRe(self.principal, _principal_regex()),
        ]
        for name, kind in CONTEXT_SCHEMA.items():
            if kind is AttrType.INT:
                var = self.context[name]
                parts.append(z3.And(var >= INT_MIN, var <= INT_MAX))
        return z3.And(parts)

    def well_formed_bounds(self) -> Any:
        """The costly part of well-formedness: no `.`/`..` segment, path and string lengths.

        Returns:
            A Z3 Bool.
        """
        parts = [z3_well_formed_path(self.resource)]
        for name, kind in CONTEXT_SCHEMA.items():
            if kind is AttrType.STRING:
                parts.append(z3.Length(self.context[name]) <= MAX_STRING)
        return z3.And(parts)

    @ensure(lambda result: len(result) == 4 + 2 * len(CONTEXT_SCHEMA), "every variable bound")
    def bind(self, request: Request) -> list[tuple[Any, Any]]:
        """Substitution pairs giving every variable the request's value.

        An absent context attribute gets ``has`` false and a default value (which
        the encoding never reads unguarded).

        Args:
            request: a validated request.

        Returns:
            (variable, value) pairs for :func:`z3.substitute`.
        """
        pairs = [
            (self.principal, z3_string(request.principal)),
            (self.action, z3_string(request.action)),
            (self.resource, z3_string(request.resource)),
            (self.channel, z3_string(request.channel)),
        ]
        for name, kind in CONTEXT_SCHEMA.items():
            present = name in request.context
            value = request.context[name] if present else _DEFAULTS[kind]
            pairs.append((self.present[name], z3.BoolVal(present)))
            pairs.append((self.context[name], _concrete(kind, value)))
        return pairs

    @ensure(
        lambda result: set(result) >= {"principal", "action", "resource", "channel"},
        "a request dict",
    )
    def decode(self, model: Any, universe: frozenset[str] = frozenset()) -> dict[str, Any]:
        """Read a request out of a Z3 model, in the shape ``parse_request`` accepts.

        Sets are decoded as their members among ``universe`` and the model's
        string values, plus one fresh string if the model's set holds anything
        else: the language observes a set only through membership of such
        strings and equality with literal sets (which such a fresh member keeps
        false). Context strings that are
        neither a literal nor the value of a request attribute, and that are not
        printable ASCII of at most 256 characters, are renamed to fresh short
        names (consistently, so equal stay equal): the language compares such
        strings only for equality, so the decoded request behaves as the model.

        Args:
            model: a Z3 model of a formula over these variables.
            universe: the string literals of the policies.

        Returns:
            ``{"request_id", "principal", "action", "resource", "channel", "context"}``.
        """

        def ev(term: Any) -> Any:
            return model.eval(term, model_completion=True)

        out: dict[str, Any] = {"request_id": "counterexample"}
        for name in _ATTRS:
            out[name] = _decode_string(ev(self.attribute(name)))
        context: dict[str, Any] = {}
        for name, kind in CONTEXT_SCHEMA.items():
            if z3.is_true(ev(self.present[name])) and kind is not AttrType.SET:
                context[name] = _decode_scalar(kind, ev(self.context[name]))
        strings = set(universe) | {out[n] for n in _ATTRS}
        strings |= {v for v in context.values() if isinstance(v, str)}
        rename = _renaming(strings, set(universe) | {out[n] for n in _ATTRS})
        taken = strings | set(rename.values())
        for name, kind in CONTEXT_SCHEMA.items():
            if kind is AttrType.SET and z3.is_true(ev(self.present[name])):
                value = ev(self.context[name])
                members = {
                    rename.get(s, s)
                    for s in strings
                    if z3.is_true(ev(z3.IsMember(z3_string(s), value)))
                }
                if _has_member_outside(value, strings):  # keep `S == [..]` false when it was
                    members.add(_fresh_name(taken))
                context[name] = sorted(members)
            elif kind is AttrType.STRING and name in context:
                context[name] = rename.get(context[name], context[name])
        out["context"] = context
        return out


def _has_member_outside(value: Any, strings: set[str]) -> bool:
    """Whether the ground set ``value`` holds a string outside ``strings``."""
    x = z3.String("witness")
    solver = z3.Solver()
    solver.add(z3.IsMember(x, value), *[x != z3_string(s) for s in sorted(strings)])
    return bool(solver.check() == z3.sat)


def _fresh_name(taken: set[str]) -> str:
    name = next(f"w{i}" for i in range(len(taken) + 1) if f"w{i}" not in taken)
    taken.add(name)
    return name


def _readable(s: str) -> bool:
    return len(s) <= MAX_STRING and all(" " <= c <= "~" for c in s)


def _renaming(strings: set[str], fixed: set[str]) -> dict[str, str]:
    """Fresh printable names for the unreadable strings not in ``fixed``."""
    out: dict[str, str] = {}
    fresh = (f"v{i}" for i in range(len(strings) + len(fixed) + 1))
    for s in sorted(strings - fixed):
        if not _readable(s):
            out[s] = next(n for n in fresh if n not in strings)
    return out


def _decode_scalar(kind: AttrType, value: Any) -> Any:
    if kind is AttrType.INT:
        return value.as_long()
    if kind is AttrType.BOOL:
        return z3.is_true(value)
    return _decode_string(value)
