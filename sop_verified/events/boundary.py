"""The telemetry boundary: which request context values may leave SOP in an event.

A decision's log entry keeps the whole request, context included: the log is
the record an auditor verifies, and a verifier needs every byte. An event is
what leaves: by default it carries *no* context value. The operator names the
attributes that may leave (``[telemetry] allow`` in ``sop.toml``); every other
attribute is dropped (``mode = "drop"``, the default) or replaced by a keyed
hash (``mode = "hash"``): ``hmac-sha256:`` and the hex HMAC-SHA256, under the
data directory's telemetry key, of the canonical JSON of ``[name, value]``.
The keyed hash lets a consumer group events by a value it cannot read; without
the key a dictionary of candidate values (an hour, a trust level) gives nothing
away, which an unkeyed digest would. docs/TELEMETRY.md is the whole boundary.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sop_verified.core.contracts import ensure
from sop_verified.core.request import CONTEXT_SCHEMA, AttrType
from sop_verified.tools.canonical import canonical_json

__all__ = ["HASH_PREFIX", "TELEMETRY_KEY_BYTES", "BoundaryMode", "TelemetryBoundary"]

HASH_PREFIX = "hmac-sha256:"
"""How a hashed context value starts in an event (then 64 lowercase hex digits)."""

TELEMETRY_KEY_BYTES = 32
"""The telemetry key's size (HMAC-SHA256, RFC 2104: a key as long as the hash)."""


class BoundaryMode(enum.StrEnum):
    """What happens to a context attribute that is not allow-listed."""

    DROP = "drop"
    HASH = "hash"


@dataclass(frozen=True, slots=True)
class TelemetryBoundary:
    """The allow-list of context attributes, and what happens to the others.

    Attributes:
        allow: the context attributes whose values may leave SOP as they are.
        mode: ``drop`` (the default) or ``hash`` for every other attribute.
        key: the telemetry key (``hash`` only); never shown in a ``repr``.
    """

    allow: frozenset[str] = frozenset()
    mode: BoundaryMode = BoundaryMode.DROP
    key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.allow) - set(CONTEXT_SCHEMA))
        if unknown:
            raise ValueError(
                f"unknown context attribute `{unknown[0]}`;"
                f" accepted: {', '.join(sorted(CONTEXT_SCHEMA))}"
            )
        if self.mode is BoundaryMode.HASH and (
            self.key is None or len(self.key) != TELEMETRY_KEY_BYTES
        ):
            raise ValueError(f"`hash` needs a {TELEMETRY_KEY_BYTES}-byte telemetry key")

    @classmethod
    def of(
        cls, allow: Iterable[str] = (), mode: str = "drop", key: bytes | None = None
    ) -> TelemetryBoundary:
        """Build a boundary from configuration values.

        Args:
            allow: the allow-listed context attribute names.
            mode: ``drop`` or ``hash``.
            key: the telemetry key (needed for ``hash``, ignored for ``drop``).

        Returns:
            The boundary.

        Raises:
            ValueError: an unknown attribute or mode, or ``hash`` without a key.
        """
        try:
            chosen = BoundaryMode(mode)
        except ValueError:
            raise ValueError(f"unknown telemetry mode `{mode}`; accepted: drop, hash") from None
        held = key if chosen is BoundaryMode.HASH else None
        return cls(frozenset(allow), chosen, held)

    @ensure(
        lambda self, context, result: all(
            name in context and (name in self.allow or self.mode is BoundaryMode.HASH)
            for name in result
        ),
        "only allow-listed attributes, or hashed ones, leave",
        helper=True,
    )
    def context(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """The context as it may leave SOP: allow-listed values, the rest dropped or hashed.

        Args:
            context: the request's context as the log entry holds it.

        Returns:
            The attributes that leave, by name.
        """
        out: dict[str, Any] = {}
        for name, value in context.items():
            if name in self.allow and _well_typed(name, value):
                out[name] = value
            elif self.mode is BoundaryMode.HASH and isinstance(name, str):
                out[name] = self.keyed_hash(name, value)
        return out

    def keyed_hash(self, name: str, value: Any) -> str:
        """``hmac-sha256:<hex>`` of the canonical JSON of ``[name, value]`` under the key.

        Raises:
            ValueError: the boundary has no key (``drop`` mode).
        """
        if self.key is None:
            raise ValueError("a `drop` boundary has no telemetry key to hash with")
        message = canonical_json([name, value])
        return HASH_PREFIX + hmac.new(self.key, message, hashlib.sha256).hexdigest()


def _well_typed(name: str, value: Any) -> bool:
    """Whether ``value`` has the JSON type the context schema gives ``name``."""
    kind = CONTEXT_SCHEMA[name]
    if kind is AttrType.INT:
        return type(value) is int
    if kind is AttrType.BOOL:
        return type(value) is bool
    if kind is AttrType.STRING:
        return type(value) is str
    return type(value) is list and all(type(x) is str for x in value)
