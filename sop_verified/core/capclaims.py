"""The :class:`Capability` value object and its canonical claims.

A capability's claims are exactly ``id``, ``parent_id``, ``principal``,
``actions`` (sorted, unique, known action names), ``resources`` (sorted,
unique path globs), ``not_before``, ``expires``, ``issued_at`` and
``key_id``; their canonical form is RFC 8785 JSON. A capability is valid at
``now`` iff ``not_before <= now < expires`` (the expiry second itself is
already outside the window).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from sop_verified.core.captoken import KEY_ID_RE
from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.request import ACTIONS, PRINCIPAL_PATTERN
from sop_verified.errors import CapabilityError, InputError
from sop_verified.tools.canonical import canonical_json
from sop_verified.tools.paths import Glob

__all__ = [
    "CAP_ID_RE",
    "MAX_RESOURCES",
    "MAX_TIME",
    "Capability",
    "normalize_actions",
    "normalize_resources",
]

CAP_ID_RE = re.compile(r"cap-[0-9a-f]{32}")
PRINCIPAL_RE = re.compile(PRINCIPAL_PATTERN)  # the request's own principal grammar
MAX_RESOURCES = 16
MAX_TIME = 2**53 - 1  # the largest integer RFC 8785 represents exactly
_CLAIM_KEYS = frozenset(
    {"id", "parent_id", "principal", "actions", "resources", "not_before", "expires"}
    | {"issued_at", "key_id"}
)


def _claim_error(message: str, where: str, accepted: str = "") -> CapabilityError:
    text = f"{message}; at `{where}`" + (f"; accepted: {accepted}" if accepted else "")
    return CapabilityError(text, code="malformed")


@require(lambda actions: actions is not None, "actions are given")
@ensure(lambda result: result <= ACTIONS, "only known actions")
def normalize_actions(actions: Iterable[str]) -> frozenset[str]:
    """Return ``actions`` as a non-empty frozenset of known action names.

    Args:
        actions: action names (any iterable of strings except a bare string).

    Returns:
        The frozenset of actions.

    Raises:
        CapabilityError: code ``malformed``: empty, a bare string, or an unknown action.
    """
    if isinstance(actions, str | bytes):
        raise _claim_error("actions must be a collection of names, not a string", "actions")
    out = frozenset(actions)
    if not out:
        raise _claim_error("a capability needs at least one action", "actions")
    unknown = sorted(str(a) for a in out if a not in ACTIONS)
    if unknown:
        raise _claim_error(
            f"unknown action `{unknown[0][:64]}`", "actions", ", ".join(sorted(ACTIONS))
        )
    return out


@require(lambda resources: resources is not None, "resources are given")
@ensure(lambda result: list(result) == sorted(set(result)), "sorted and unique")
def normalize_resources(resources: Iterable[str]) -> tuple[str, ...]:
    """Return ``resources`` as a sorted tuple of unique, well-formed globs.

    Args:
        resources: glob patterns (any iterable of strings except a bare string).

    Returns:
        The sorted, de-duplicated patterns.

    Raises:
        CapabilityError: code ``malformed``: empty, too many, or a malformed glob.
    """
    if isinstance(resources, str | bytes):
        raise _claim_error("resources must be a collection of globs, not a string", "resources")
    out = tuple(sorted(set(resources)))
    if not out or len(out) > MAX_RESOURCES:
        raise _claim_error(
            f"a capability has {len(out)} resource globs", "resources", f"1 to {MAX_RESOURCES}"
        )
    for pattern in out:
        try:
            Glob(pattern, where="resources")
        except InputError as exc:
            raise CapabilityError(str(exc), code="malformed") from None
    return out


def _check_time(value: object, name: str) -> None:
    if type(value) is not int or not 0 <= value <= MAX_TIME:
        raise _claim_error(
            f"`{name}` must be an integer time, got `{value!r:.40}`",
            name,
            f"integer Unix seconds in 0..{MAX_TIME}",
        )


def _check_fields(cap: Capability) -> None:
    """The plain-code validation behind the constructor (the contracts only repeat it)."""
    if not isinstance(cap.id, str) or CAP_ID_RE.fullmatch(cap.id) is None:
        raise _claim_error(f"malformed capability id `{cap.id!s:.80}`", "id", "`cap-` and 32 hex")
    if cap.parent_id is not None and (
        not isinstance(cap.parent_id, str) or CAP_ID_RE.fullmatch(cap.parent_id) is None
    ):
        raise _claim_error(f"malformed parent id `{cap.parent_id!s:.80}`", "parent_id")
    if not isinstance(cap.principal, str) or PRINCIPAL_RE.fullmatch(cap.principal) is None:
        raise _claim_error(
            f"malformed principal `{cap.principal!s:.80}`",
            "principal",
            "a lowercase protocol identity such as `drac`",
        )
    if not isinstance(cap.key_id, str) or KEY_ID_RE.fullmatch(cap.key_id) is None:
        raise _claim_error(f"malformed key id `{cap.key_id!s:.40}`", "key_id")
    if not isinstance(cap.actions, frozenset) or normalize_actions(cap.actions) != cap.actions:
        raise _claim_error("actions must be a frozenset", "actions")
    if not isinstance(cap.resources, tuple) or normalize_resources(cap.resources) != cap.resources:
        raise _claim_error("resources must be a sorted tuple of unique globs", "resources")
    for name in ("not_before", "expires", "issued_at"):
        _check_time(getattr(cap, name), name)
    if cap.not_before >= cap.expires:
        raise _claim_error(
            f"empty validity window `{cap.not_before}`..`{cap.expires}`",
            "expires",
            "`not_before` < `expires` (valid iff not_before <= now < expires)",
        )


@invariant(lambda self: self.not_before < self.expires, "the validity window is not empty")
@dataclass(frozen=True)  # no slots: icontract invariants need the plain class machinery
class Capability:
    """An admitted right: who (principal) may do what (actions) where (resources) and when."""

    id: str
    parent_id: str | None
    principal: str
    actions: frozenset[str]
    resources: tuple[str, ...]
    not_before: int
    expires: int
    issued_at: int
    key_id: str
    globs: tuple[Glob, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_fields(self)
        object.__setattr__(self, "globs", tuple(Glob(p) for p in self.resources))

    @ensure(lambda result: result.keys() == _CLAIM_KEYS, "exactly the claim names")
    def to_claims(self) -> dict[str, Any]:
        """Return the claims as a JSON-ready dict (sets as sorted lists)."""
        return {
            "id": self.id,
            "parent_id": self.parent_id,
            "principal": self.principal,
            "actions": sorted(self.actions),
            "resources": list(self.resources),
            "not_before": self.not_before,
            "expires": self.expires,
            "issued_at": self.issued_at,
            "key_id": self.key_id,
        }

    @ensure(lambda result: len(result) > 0, "canonical claims are not empty")
    def claims_bytes(self) -> bytes:
        """Return the RFC 8785 canonical JSON of the claims."""
        return canonical_json(self.to_claims())

    @require(lambda now: type(now) is int, "time is integer seconds")
    def valid_at(self, now: int) -> bool:
        """Whether ``not_before <= now < expires``."""
        return self.not_before <= now < self.expires

    @ensure(lambda self, action, result: not result or action in self.actions, "only its actions")
    def covers(self, action: str, resource: str) -> bool:
        """Whether ``action`` is granted and the well-formed path ``resource`` matches a glob."""
        return action in self.actions and any(g.matches(resource) for g in self.globs)

    @staticmethod
    @ensure(lambda result, data: result.claims_bytes() == data, "claims round-trip exactly")
    def from_claims(data: bytes) -> Capability:
        """Parse canonical claims bytes strictly.

        Args:
            data: RFC 8785 canonical JSON of exactly the claim names.

        Returns:
            The capability.

        Raises:
            CapabilityError: code ``malformed``: not JSON, wrong or missing
                claims, ill-typed values, or not in canonical form.
        """
        return _from_claims(data)


def _from_claims(data: bytes) -> Capability:
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _claim_error("claims are not JSON", "claims") from None
    if not isinstance(raw, dict) or raw.keys() != _CLAIM_KEYS:
        got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise _claim_error(
            f"claims have the wrong names `{got}`",
            "claims",
            ", ".join(f"`{k}`" for k in sorted(_CLAIM_KEYS)),
        )
    for name in ("actions", "resources"):
        value = raw[name]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _claim_error(f"`{name}` must be a list of strings", name)
    cap = Capability(
        id=raw["id"],
        parent_id=raw["parent_id"],
        principal=raw["principal"],
        actions=frozenset(raw["actions"]),
        resources=tuple(raw["resources"]),
        not_before=raw["not_before"],
        expires=raw["expires"],
        issued_at=raw["issued_at"],
        key_id=raw["key_id"],
    )
    if cap.claims_bytes() != data:
        raise _claim_error("claims are not in RFC 8785 canonical form", "claims")
    return cap
