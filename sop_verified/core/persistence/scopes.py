"""Scopes: where each protocol's bytes may land (INV-4), and how they are kept.

A :class:`Scope` serves the resource paths under one literal prefix (the
config's ``path = "artifacts/drac/**"`` gives the prefix ``artifacts/drac``),
stores them below one root directory (relative to ``<data>/scopes``), is
owned by the protocols that may write it, readable by its owners and
``readers``, and has a mode:

- ``content-addressed``: bytes are stored once, named by their SHA-256;
  names map to digests in the index; verified on every read;
- ``write-once``: a name is written once and never overwritten or deleted;
- ``versioned``: every write adds a version; the index keeps the latest.

Retention (keep N versions, a maximum age) applies only to superseded
versions, never to the latest one, and never to write-once scopes.
:class:`ScopeTable` maps a resource to its scope and refuses overlapping
prefixes or nested roots, so every path has at most one scope.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from sop_verified.core.contracts import ensure, require
from sop_verified.errors import ConfigError, InputError
from sop_verified.tools.paths import check_path

__all__ = [
    "DEFAULT_MAX_BLOB_BYTES",
    "MAX_BLOB_BYTES_LIMIT",
    "Retention",
    "Scope",
    "ScopeMode",
    "ScopeTable",
]

DEFAULT_MAX_BLOB_BYTES = 16 * 1024 * 1024
MAX_BLOB_BYTES_LIMIT = 1024 * 1024 * 1024
_NEVER_DELETED_PREFIXES = ("verdicts",)  # proof verdicts are never deleted (issue 5, item 4)


class ScopeMode(enum.StrEnum):
    """How a scope stores what is written to it."""

    CONTENT_ADDRESSED = "content-addressed"
    WRITE_ONCE = "write-once"
    VERSIONED = "versioned"


@dataclass(frozen=True, slots=True)
class Retention:
    """Keep at most ``keep`` versions of a name; drop superseded versions older than the age."""

    keep: int | None = None
    max_age_seconds: int | None = None

    def __post_init__(self) -> None:
        if self.keep is None and self.max_age_seconds is None:
            raise ConfigError("a retention rule needs `keep` or `max_age_seconds`")
        for name in ("keep", "max_age_seconds"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 1):
                raise ConfigError(f"retention `{name}` is `{value!r}`", accepted="an integer >= 1")

    @require(lambda rank: rank >= 0)
    @ensure(lambda rank, result: rank > 0 or not result, "the latest version is never expired")
    def expired(self, rank: int, age: int) -> bool:
        """Whether the version ``rank`` places behind the latest (0 = latest) is to be deleted.

        Args:
            rank: 0 for the latest version of a name, 1 for the one before, ...
            age: its age in seconds.

        Returns:
            True when retention deletes it.
        """
        if rank == 0:
            return False
        too_many = self.keep is not None and rank >= self.keep
        too_old = self.max_age_seconds is not None and age > self.max_age_seconds
        return too_many or too_old


def _check_segments(value: str, what: str, scope: str) -> str:
    try:
        return check_path(value, where=f"scope.{scope}.{what}")
    except InputError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class Scope:
    """One declared scope (validated on construction)."""

    name: str
    root: str
    owners: frozenset[str]
    mode: ScopeMode
    prefix: str
    readers: frozenset[str] = field(default_factory=frozenset)
    retention: Retention | None = None
    max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES

    def __post_init__(self) -> None:
        _check_segments(self.root, "root", self.name)
        _check_segments(self.prefix, "path", self.name)
        if not self.owners:
            raise ConfigError(f"scope `{self.name}` has no owner", accepted="at least one protocol")
        if not 1 <= self.max_blob_bytes <= MAX_BLOB_BYTES_LIMIT:
            raise ConfigError(
                f"scope `{self.name}` has `max_blob_bytes` = {self.max_blob_bytes}",
                accepted=f"1 to {MAX_BLOB_BYTES_LIMIT}",
            )
        if self.retention is not None and self.mode is ScopeMode.WRITE_ONCE:
            raise ConfigError(
                f"write-once scope `{self.name}` declares retention; it is never deleted",
                accepted="no `retention` on a write-once scope",
            )
        if self.prefix.split("/")[0] in _NEVER_DELETED_PREFIXES and (
            self.mode is not ScopeMode.WRITE_ONCE
        ):
            raise ConfigError(
                f"scope `{self.name}` serves `{self.prefix}`: proof verdicts are never deleted",
                accepted='`mode = "write-once"`',
            )

    @ensure(lambda self, resource, result: result is None or resource.endswith(result), helper=True)
    def relative(self, resource: str) -> str | None:
        """The resource's path below this scope, or None when the scope does not serve it."""
        head = self.prefix + "/"
        return resource[len(head) :] if resource.startswith(head) else None

    @ensure(lambda self, principal, result: not result or principal in self.owners, helper=True)
    def writable_by(self, principal: str) -> bool:
        """Whether ``principal`` owns this scope (only owners write, INV-4)."""
        return principal in self.owners

    @ensure(lambda self, principal, result: result == (principal in self.owners | self.readers))
    def readable_by(self, principal: str) -> bool:
        """Whether ``principal`` may read this scope (owners and declared readers)."""
        return principal in self.owners or principal in self.readers


def _nested(a: str, b: str) -> bool:
    """Whether path ``a`` equals ``b`` or lies below it (by whole segments)."""
    return a == b or a.startswith(b + "/")


@dataclass(frozen=True)
class ScopeTable:
    """The declared scopes: no two share a name, overlap in prefix, or nest their roots."""

    scopes: tuple[Scope, ...] = ()

    def __post_init__(self) -> None:
        seen: dict[str, Scope] = {}
        for s in self.scopes:
            if s.name in seen:
                raise ConfigError(f"scope `{s.name}` is declared twice")
            for other in seen.values():
                if _nested(s.prefix, other.prefix) or _nested(other.prefix, s.prefix):
                    raise ConfigError(
                        f"scopes `{other.name}` and `{s.name}` overlap: "
                        f"`{other.prefix}` and `{s.prefix}`",
                        accepted="disjoint paths, so every resource has at most one scope",
                    )
                if _nested(s.root, other.root) or _nested(other.root, s.root):
                    raise ConfigError(
                        f"scopes `{other.name}` and `{s.name}` nest their roots: "
                        f"`{other.root}` and `{s.root}`",
                        accepted="disjoint root directories",
                    )
            seen[s.name] = s

    @ensure(lambda result: result is None or result[1] != "", helper=True)
    def locate(self, resource: str) -> tuple[Scope, str] | None:
        """The scope serving ``resource`` and the path below its prefix, or None (unknown scope).

        Args:
            resource: a resource path (already well-formed).

        Returns:
            ``(scope, relative path)`` or None when no scope serves it.
        """
        for s in self.scopes:
            rel = s.relative(resource)
            if rel:
                return s, rel
        return None

    @ensure(lambda name, result: result is None or result.name == name)
    def get(self, name: str) -> Scope | None:
        """The scope called ``name``, or None."""
        return next((s for s in self.scopes if s.name == name), None)

    def __iter__(self) -> Iterator[Scope]:
        return iter(self.scopes)
