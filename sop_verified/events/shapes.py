"""Shapes of event data: what may be copied from a log entry into an event, and its schema.

An event's ``data`` is never the entry itself: it is the entry seen through a
:class:`Shape` that names every field that may leave, with its JSON type. A
field no shape names (a reason's free-text ``message``, a counterexample, an
obligation's source, an idempotency key, a DSSE signature) never leaves SOP;
a context value leaves only through :class:`ContextShape`, which applies the
telemetry boundary. The same shapes write the JSON Schemas under
``docs/events/`` (:mod:`sop_verified.events.schemas`), so the documentation
and the projection cannot drift apart.

A value that does not have its declared type is left out; a required field
that is missing or mistyped makes the whole object not match (``MISSING``),
and the projection then treats the entry as one it does not know
(``sop.entry.v1``): an event always validates against its schema.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from sop_verified.core.request import CONTEXT_SCHEMA, AttrType
from sop_verified.events.boundary import HASH_PREFIX, TelemetryBoundary

__all__ = [
    "BOOL",
    "INT",
    "MISSING",
    "NAME",
    "STR",
    "STRS",
    "ArrayOf",
    "ContextShape",
    "F",
    "MapOf",
    "Nullable",
    "Obj",
    "Shape",
    "StatementShape",
]


class _Missing:
    """The value of a field that does not match its shape."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class Shape:
    """A JSON value's declared shape: how it is projected and what its schema is."""

    def project(self, value: Any, boundary: TelemetryBoundary) -> Any:
        """The value as it may leave SOP, or :data:`MISSING` when it does not match."""
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        """The JSON Schema (draft 2020-12) of what :meth:`project` returns."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class _Scalar(Shape):
    json_type: str
    check: Callable[[Any], bool]
    pattern: str | None = None

    def project(self, value: Any, boundary: TelemetryBoundary) -> Any:
        return value if self.check(value) else MISSING

    def schema(self) -> dict[str, Any]:
        return {"type": self.json_type} | (
            {} if self.pattern is None else {"pattern": self.pattern}
        )


_NAME = re.compile(r"[A-Za-z0-9._:-]{1,128}")

STR: Final = _Scalar("string", lambda v: type(v) is str)
INT: Final = _Scalar("integer", lambda v: type(v) is int)
BOOL: Final = _Scalar("boolean", lambda v: type(v) is bool)
NAME: Final = _Scalar(
    "string", lambda v: type(v) is str and _NAME.fullmatch(v) is not None, f"^{_NAME.pattern}$"
)
"""A short name (an unknown entry's ``type`` or ``op``): never free text."""


@dataclass(frozen=True, slots=True)
class Nullable(Shape):
    """``inner`` or ``null``."""

    inner: Shape

    def project(self, value: Any, boundary: TelemetryBoundary) -> Any:
        return None if value is None else self.inner.project(value, boundary)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [self.inner.schema(), {"type": "null"}]}


@dataclass(frozen=True, slots=True)
class ArrayOf(Shape):
    """A list whose every item has the shape ``item`` (one that does not: the list does not)."""

    item: Shape

    def project(self, value: Any, boundary: TelemetryBoundary) -> Any:
        if type(value) is not list:
            return MISSING
        out = [self.item.project(v, boundary) for v in value]
        return MISSING if any(v is MISSING for v in out) else out

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": self.item.schema()}


@dataclass(frozen=True, slots=True)
class MapOf(Shape):
    """An object mapping names to values of the shape ``value``."""

    value: Shape

    def project(self, value: Any, boundary: TelemetryBoundary) -> Any:
        if type(value) is not dict:
            return MISSING
        out = {k: self.value.project(v, boundary) for k, v in value.items()}
        return MISSING if any(v is MISSING for v in out.values()) else out

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": self.value.schema()}


STRS: Final = ArrayOf(STR)


@dataclass(frozen=True, slots=True)
class F:
    """One declared field of an :class:`Obj`.

    Attributes:
        shape: its shape.
        required: an object without it (or with it mistyped) does not match.
        source: the entry's key it is read from (default: the field's own name).
        doc: what it is, for the schema's ``description``.
    """

    shape: Shape
    required: bool = False
    source: str | None = None
    doc: str = ""


@dataclass(frozen=True, slots=True)
class Obj(Shape):
    """An object with declared fields only: anything else in the entry stays in the log."""

    fields: Mapping[str, F] = field(default_factory=dict)

    def project(self, value: Any, boundary: TelemetryBoundary) -> Any:
        if type(value) is not dict:
            return MISSING
        out: dict[str, Any] = {}
        for name, f in self.fields.items():
            key = f.source or name
            got = f.shape.project(value[key], boundary) if key in value else MISSING
            if got is not MISSING:
                out[name] = got
            elif f.required:
                return MISSING
        return out

    def schema(self) -> dict[str, Any]:
        props = {}
        for name, f in self.fields.items():
            props[name] = f.shape.schema() | ({"description": f.doc} if f.doc else {})
        required = [name for name, f in self.fields.items() if f.required]
        return {
            "type": "object",
            "properties": props,
            **({"required": required} if required else {}),
            "additionalProperties": False,
        }


_CONTEXT_TYPES: dict[AttrType, dict[str, Any]] = {
    AttrType.INT: {"type": "integer"},
    AttrType.STRING: {"type": "string"},
    AttrType.BOOL: {"type": "boolean"},
    AttrType.SET: {"type": "array", "items": {"type": "string"}},
}


@dataclass(frozen=True, slots=True)
class ContextShape(Shape):
    """A request's context through the telemetry boundary (allow-listed, hashed or dropped)."""

    def project(self, value: Any, boundary: TelemetryBoundary) -> Any:
        if type(value) is not dict:
            return MISSING
        return boundary.context(value)  # spec: telemetry boundary — docs/TELEMETRY.md

    def schema(self) -> dict[str, Any]:
        hashed = {"type": "string", "pattern": f"^{HASH_PREFIX}[0-9a-f]{{64}}$"}
        props = {
            name: {"anyOf": [_CONTEXT_TYPES[kind], hashed]}
            for name, kind in sorted(CONTEXT_SCHEMA.items())
        }
        return {
            "type": "object",
            "description": "Only allow-listed attributes as they are, the others keyed-hashed"
            ' (`[telemetry] mode = "hash"`) or absent (the default); docs/TELEMETRY.md.',
            "properties": props,
            "additionalProperties": False,
        }


_SUBJECT = Obj(
    {
        "name": F(STR, required=True),
        "digest": F(MapOf(STR), required=True, doc="Algorithm to hex digest."),
    }
)
_STATEMENT = Obj(
    {
        "payload_type": F(STR, required=True, doc="The DSSE payloadType."),
        "keyids": F(STRS, required=True, doc="The key ids of the DSSE signatures."),
        "statement_type": F(STR, doc="The in-toto Statement's `_type`."),
        "predicate_type": F(STR, doc="The in-toto Statement's `predicateType`."),
        "subject": F(ArrayOf(_SUBJECT), doc="The in-toto Statement's subjects."),
    }
)


@dataclass(frozen=True, slots=True)
class StatementShape(Shape):
    """A DSSE envelope seen from outside: its payload type, key ids and the statement's subjects.

    The signatures and the predicate stay in the log (``sop attest export`` writes
    the envelopes out): a predicate can carry a proof's counterexample or a
    provenance record, more than a notification needs.
    """

    def project(self, value: Any, boundary: TelemetryBoundary) -> Any:
        if type(value) is not dict:
            return MISSING
        sigs = value.get("signatures")
        summary: dict[str, Any] = {
            "payload_type": value.get("payloadType"),
            "keyids": [s.get("keyid") for s in sigs if type(s) is dict]
            if type(sigs) is list
            else None,
        }
        statement = _decoded(value.get("payload"))
        if statement is not None:
            summary["statement_type"] = statement.get("_type")
            summary["predicate_type"] = statement.get("predicateType")
            summary["subject"] = statement.get("subject")
        return _STATEMENT.project(summary, boundary)

    def schema(self) -> dict[str, Any]:
        return _STATEMENT.schema()


def _decoded(payload: Any) -> dict[str, Any] | None:
    """The JSON object a DSSE payload (base64) holds, or None."""
    if type(payload) is not str:
        return None
    try:
        value = orjson.loads(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        return None
    return value if type(value) is dict else None
