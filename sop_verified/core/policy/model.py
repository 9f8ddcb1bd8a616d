"""Validated policies and policy documents, with their canonical form and digest.

A :class:`Policy` and a :class:`PolicyDocument` check their content when they
are built, whoever builds them (the loader, a test, a canonical document read
back from storage): ids, actions, globs, channels, principals, roles, the
`when` condition's types. The canonical form of a document is RFC 8785 JSON
of :meth:`PolicyDocument.to_canonical`; it is itself a valid JSON policy
document and its SHA-256 is the policy digest of the boot manifest.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from sop_verified.core.contracts import ensure, invariant
from sop_verified.core.policy.expr import Expr, string_literals, to_text
from sop_verified.core.policy.typecheck import CHANNELS, check_condition
from sop_verified.core.request import ACTIONS, PRINCIPAL_PATTERN
from sop_verified.errors import InputError, PolicyValidationError
from sop_verified.tools.canonical import canonical_json, digest, sha256_hex
from sop_verified.tools.paths import Glob

__all__ = [
    "ANY",
    "MAX_DESCRIPTION",
    "MAX_LIST",
    "MAX_POLICIES",
    "MAX_ROLES",
    "MAX_ROLE_MEMBERS",
    "POLICY_ID_PATTERN",
    "ROLE_PREFIX",
    "Policy",
    "PolicyDocument",
    "PolicyEffect",
]

ANY: Final = "*"
ROLE_PREFIX: Final = "role:"
POLICY_ID_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"
MAX_POLICIES: Final = 1024
MAX_LIST: Final = 256
MAX_ROLES: Final = 256
MAX_ROLE_MEMBERS: Final = 1024
MAX_DESCRIPTION: Final = 2048

_ID_RE: Final = re.compile(POLICY_ID_PATTERN)
_PRINCIPAL_RE: Final = re.compile(PRINCIPAL_PATTERN)
_ACTIONS_TEXT: Final = ", ".join(f"`{a}`" for a in sorted(ACTIONS))


class PolicyEffect(enum.StrEnum):
    """What a matching policy says."""

    PERMIT = "permit"
    FORBID = "forbid"


def _where(source: str, policy_id: str, fieldname: str) -> str:
    head = f"{source}: " if source else ""
    return f"{head}policy {policy_id}: {fieldname}"


def _check_list(values: tuple[str, ...] | None, where: str) -> None:
    if values is None:
        return
    if not values:
        raise PolicyValidationError(
            "empty list", where=where, accepted='a non-empty list, or `"*"` for any'
        )
    if len(values) > MAX_LIST:
        raise PolicyValidationError(
            f"list has {len(values)} entries", where=where, accepted=f"at most {MAX_LIST} entries"
        )
    if len(set(values)) != len(values):
        dup = next(v for v in values if values.count(v) > 1)
        raise PolicyValidationError(
            f"`{dup}` is listed twice", where=where, accepted="each entry once"
        )


def _check_principal_entry(p: str, where: str) -> None:
    name = p.removeprefix(ROLE_PREFIX)
    if _PRINCIPAL_RE.fullmatch(name) is None:
        raise PolicyValidationError(
            f"malformed principal `{p[:80]}`",
            where=where,
            accepted=f'an id or `role:<name>` matching `{PRINCIPAL_PATTERN}`, or `"*"` alone',
        )


@invariant(lambda self: _ID_RE.fullmatch(self.id) is not None, "a well-formed id")
@dataclass(frozen=True)
class Policy:
    """One policy: effect, scope (principals, actions, resources, channel), optional condition.

    ``None`` for principals, actions, resources or channel means any (written ``"*"``).
    Principal entries are principal ids or ``role:<name>``; resources are globs.
    """

    id: str
    effect: PolicyEffect
    principals: tuple[str, ...] | None
    actions: tuple[str, ...] | None
    resources: tuple[str, ...] | None
    channel: str | None = None
    when: Expr | None = None
    description: str = ""
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or _ID_RE.fullmatch(self.id) is None:
            raise PolicyValidationError(
                f"malformed policy id `{str(self.id)[:80]}`",
                where=_where(self.source, str(self.id)[:80], "id"),
                accepted=f"an id matching `{POLICY_ID_PATTERN}`",
            )
        if not isinstance(self.effect, PolicyEffect):
            raise PolicyValidationError(
                f"unknown effect `{self.effect}`",
                where=self._at("effect"),
                accepted="`permit` or `forbid`",
            )
        self._check_scope()
        if self.channel is not None and self.channel not in CHANNELS:
            raise PolicyValidationError(
                f"unknown channel `{self.channel}`",
                where=self._at("channel"),
                accepted='`"bridge"`, `"admin"` or `"*"`',
            )
        if self.when is not None:
            check_condition(self.when, self._at("when"))
        self._check_description()

    def _check_description(self) -> None:
        text = self.description
        ok = isinstance(text, str) and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)
        if not ok or len(text) > MAX_DESCRIPTION:
            raise PolicyValidationError(
                "description is not text of at most 2048 characters",
                where=self._at("description"),
                accepted=f"a string of at most {MAX_DESCRIPTION} characters, no lone surrogates",
            )

    def _at(self, fieldname: str) -> str:
        return _where(self.source, self.id, fieldname)

    def _check_scope(self) -> None:
        _check_list(self.principals, self._at("principal"))
        for p in self.principals or ():
            _check_principal_entry(p, self._at("principal"))
        _check_list(self.actions, self._at("action"))
        for a in self.actions or ():
            if a not in ACTIONS:
                raise PolicyValidationError(
                    f"unknown action `{a[:80]}`",
                    where=self._at("action"),
                    accepted=f'`"*"` or a list of {_ACTIONS_TEXT}',
                )
        _check_list(self.resources, self._at("resource"))
        for g in self.resources or ():
            try:
                Glob(g)
            except InputError as exc:
                message = str(exc).split("; at `")[0]
                accepted = exc.accepted or "globs of segments, `*`, `?` and whole `**` segments"
                raise PolicyValidationError(
                    message, where=self._at("resource"), accepted=accepted
                ) from None

    @property
    def is_forbid(self) -> bool:
        """True for a forbid policy."""
        return self.effect is PolicyEffect.FORBID

    @ensure(lambda self, result: result["id"] == self.id, "the form names this policy")
    def to_canonical(self) -> dict[str, Any]:
        """The canonical JSON-ready form (lists sorted, ``"*"`` for any, source left out).

        Returns:
            A dict with ``id``, ``effect``, ``principal``, ``action``, ``resource``,
            ``channel`` and, when set, ``when`` and ``description``.
        """

        def listing(values: tuple[str, ...] | None) -> Any:
            return ANY if values is None else sorted(values)

        out: dict[str, Any] = {
            "id": self.id,
            "effect": str(self.effect),
            "principal": listing(self.principals),
            "action": listing(self.actions),
            "resource": listing(self.resources),
            "channel": self.channel or ANY,
        }
        if self.when is not None:
            out["when"] = to_text(self.when)
        if self.description:
            out["description"] = self.description
        return out


def _check_roles(roles: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    if len(roles) > MAX_ROLES:
        raise PolicyValidationError(
            f"{len(roles)} roles are defined", where="roles", accepted=f"at most {MAX_ROLES} roles"
        )
    out: dict[str, tuple[str, ...]] = {}
    for name, members in sorted(roles.items()):
        where = f"roles: {name}"
        if _PRINCIPAL_RE.fullmatch(name) is None:
            raise PolicyValidationError(
                f"malformed role name `{name[:80]}`",
                where=where,
                accepted=f"a name matching `{PRINCIPAL_PATTERN}`",
            )
        if not members or len(members) > MAX_ROLE_MEMBERS or len(set(members)) != len(members):
            raise PolicyValidationError(
                "role members must be a non-empty list without repeats",
                where=where,
                accepted=f"1 to {MAX_ROLE_MEMBERS} distinct principal ids",
            )
        for m in members:
            if not isinstance(m, str) or _PRINCIPAL_RE.fullmatch(m) is None:
                raise PolicyValidationError(
                    f"malformed role member `{str(m)[:80]}`",
                    where=where,
                    accepted=f"principal ids matching `{PRINCIPAL_PATTERN}` (roles do not nest)",
                )
        out[name] = tuple(sorted(members))
    return out


def _check_policies(policies: tuple[Policy, ...], roles: Mapping[str, tuple[str, ...]]) -> None:
    if len(policies) > MAX_POLICIES:
        raise PolicyValidationError(
            f"the set holds {len(policies)} policies", accepted=f"at most {MAX_POLICIES} policies"
        )
    seen: dict[str, Policy] = {}
    for p in policies:
        if not isinstance(p, Policy):
            raise TypeError(f"policies must be Policy objects, got `{type(p).__name__}`")
        if p.id in seen:
            first = seen[p.id].source or "?"
            raise PolicyValidationError(
                f"duplicate policy id `{p.id}` (first in `{first}`)",
                where=_where(p.source, p.id, "id"),
                accepted="ids unique across the whole set",
            )
        seen[p.id] = p
        for entry in p.principals or ():
            role = entry.removeprefix(ROLE_PREFIX)
            if entry.startswith(ROLE_PREFIX) and role not in roles:
                raise PolicyValidationError(
                    f"unknown role `{role}`",
                    where=_where(p.source, p.id, "principal"),
                    accepted=", ".join(f"`role:{r}`" for r in sorted(roles))
                    or "no roles are defined",
                )


@invariant(lambda self: len(self._by_id) == len(self._policies), "policy ids are unique")
class PolicyDocument:
    """A whole policy set as data: policies (ordered by id) and the RBAC role table."""

    __slots__ = ("_by_id", "_digest", "_policies", "_roles")

    def __init__(
        self,
        policies: tuple[Policy, ...] | list[Policy],
        roles: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        """Build and check a document.

        Args:
            policies: the policies, in any order.
            roles: role name to principal ids.

        Raises:
            PolicyValidationError: duplicate ids, an unknown role, a malformed role table,
                or too many policies.
        """
        checked_roles = _check_roles(dict(roles or {}))
        ordered = tuple(sorted(policies, key=lambda p: p.id))
        _check_policies(ordered, checked_roles)
        self._policies = ordered
        self._roles: Mapping[str, tuple[str, ...]] = MappingProxyType(checked_roles)
        self._by_id = {p.id: p for p in ordered}
        self._digest = digest(self.to_canonical())

    def __len__(self) -> int:
        return len(self.policies)

    def __repr__(self) -> str:
        return f"PolicyDocument({len(self.policies)} policies, {self._digest})"

    @property
    def policies(self) -> tuple[Policy, ...]:
        """The policies, ordered by id."""
        return self._policies

    @property
    def roles(self) -> Mapping[str, tuple[str, ...]]:
        """Role name to its principal ids (read-only)."""
        return self._roles

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of the canonical form (the policy digest of the boot manifest)."""
        return self._digest

    @ensure(lambda result: set(result) == {"policy", "roles"}, "the two top-level keys")
    def to_canonical(self) -> dict[str, Any]:
        """The canonical form: a JSON policy document, policies by id, lists sorted.

        Returns:
            ``{"policy": [...], "roles": {...}}``.
        """
        return {
            "policy": [p.to_canonical() for p in self.policies],
            "roles": {name: list(members) for name, members in self.roles.items()},
        }

    @ensure(
        lambda self, result: digest(self.to_canonical()) == "sha256:" + sha256_hex(result),
        "the digest is the SHA-256 of these bytes",
    )
    def canonical_bytes(self) -> bytes:
        """RFC 8785 bytes of :meth:`to_canonical` (what the policy store keeps).

        Returns:
            The canonical UTF-8 JSON bytes.
        """
        return canonical_json(self.to_canonical())

    @ensure(
        lambda policy, result: (result is None) == (policy.principals is None),
        "None means any principal, and only then",
    )
    def principals_of(self, policy: Policy) -> frozenset[str] | None:
        """The principal ids a policy names, with roles expanded; ``None`` means any.

        Args:
            policy: a policy of this document.

        Returns:
            The expanded principal ids, or ``None`` for ``"*"``.
        """
        if policy.principals is None:
            return None
        out: set[str] = set()
        for entry in policy.principals:
            if entry.startswith(ROLE_PREFIX):
                out.update(self.roles[entry.removeprefix(ROLE_PREFIX)])
            else:
                out.add(entry)
        return frozenset(out)

    def string_literals(self) -> frozenset[str]:
        """Every string literal in every condition, plus principal ids named by the set.

        Returns:
            The literal strings (the Z3 encoding keeps them representable).
        """
        out: set[str] = set()
        for p in self.policies:
            if p.when is not None:
                out |= string_literals(p.when)
            out |= self.principals_of(p) or frozenset()
        return frozenset(out)
