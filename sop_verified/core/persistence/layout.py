"""Where an object lives below its scope root, by mode (pure; no I/O).

- content-addressed: ``sha256/<first 2 hex>/<64 hex>``; the resource name is
  metadata only. A name ``sha256/<64 hex>`` is the digest itself: writing it
  needs content with that digest, reading it reads that blob.
- write-once: the resource path below the scope prefix, as it is.
- versioned: the resource path with ``@d<decision index>`` appended to its
  last name: each version is its own write-once file, named by the decision
  that authorised it (so boot repair can tell whose file it is); the index
  numbers versions 1, 2, 3 in log order. Names ending in ``@v<N>`` are kept
  for reads (``state/csp/x@v2`` reads version 2 of ``x``) and refused for writes.

Names are checked here with the request grammar (``tools/paths.py``) and the
reserved ``.sop-`` prefix; the file layer checks them again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sop_verified.core.contracts import ensure, require
from sop_verified.core.persistence.scopes import Scope, ScopeMode
from sop_verified.errors import ConfinementError, InputError, PersistenceError
from sop_verified.tools.paths import check_path

__all__ = ["ReadTarget", "check_name", "read_target", "stored_path"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_VERSION_SUFFIX = re.compile(r"@v([1-9][0-9]{0,17})$")
_RESERVED = ".sop-"


@dataclass(frozen=True, slots=True)
class ReadTarget:
    """What a read asks for: a name (latest, or one version), or a blob by digest."""

    name: str | None = None
    version: int | None = None
    digest_hex: str | None = None


@ensure(lambda rel, result: result == tuple(rel.split("/")), helper=True)
def check_name(scope: Scope, rel: str, *, writing: bool) -> tuple[str, ...]:
    """Check a path below a scope prefix; return its names.

    Args:
        scope: the scope.
        rel: the path below the scope's prefix.
        writing: True for a write (``@v<N>`` names are refused in versioned scopes).

    Returns:
        The names of ``rel``.

    Raises:
        ConfinementError: the path breaks the grammar or uses the reserved prefix (INV-4).
        PersistenceError: a reserved or malformed digest or version name (``reserved_name``).
    """
    try:
        check_path(rel, where=f"scope `{scope.name}`")  # spec: INV-4 — the request grammar again
    except InputError as exc:
        raise ConfinementError(str(exc), code="bad_name") from None
    parts = tuple(rel.split("/"))
    if any(p.startswith(_RESERVED) for p in parts):
        raise ConfinementError(
            f"`{rel}` uses the reserved prefix `{_RESERVED}`", code="reserved_name"
        )
    digest_name = scope.mode is ScopeMode.CONTENT_ADDRESSED and parts[0] == "sha256"
    if digest_name and (len(parts) != 2 or _HEX64.fullmatch(parts[1]) is None):
        raise PersistenceError(
            f"`{rel}` is not a digest name",
            code="reserved_name",
            accepted="`sha256/<64 lowercase hex>` under `sha256/`",
        )
    if writing and scope.mode is ScopeMode.VERSIONED and _VERSION_SUFFIX.search(parts[-1]):
        raise PersistenceError(
            f"`{rel}` ends in a version suffix",
            code="reserved_name",
            accepted="names not ending in `@v<N>` (kept for reading version N)",
        )
    return parts


@require(lambda digest_hex: _HEX64.fullmatch(digest_hex) is not None, helper=True)
@require(lambda decision_index: decision_index >= 0, helper=True)
@ensure(lambda result: not result.startswith("/") and ".." not in result.split("/"), helper=True)
def stored_path(scope: Scope, rel: str, digest_hex: str, decision_index: int) -> str:
    """Where the object written by ``decision_index`` lives below the scope root.

    Args:
        scope: the scope.
        rel: the checked path below the scope's prefix.
        digest_hex: the content's SHA-256 (lowercase hex).
        decision_index: the log index of the ALLOW decision.

    Returns:
        The path below the root.
    """
    if scope.mode is ScopeMode.CONTENT_ADDRESSED:
        return f"sha256/{digest_hex[:2]}/{digest_hex}"
    if scope.mode is ScopeMode.VERSIONED:
        return f"{rel}@d{decision_index}"
    return rel


@ensure(lambda result: (result.name is None) != (result.digest_hex is None))
def read_target(scope: Scope, rel: str) -> ReadTarget:
    """What a read of ``rel`` in ``scope`` asks for.

    Raises:
        ConfinementError: the path breaks the grammar (INV-4).
        PersistenceError: a malformed digest name.
    """
    parts = check_name(scope, rel, writing=False)
    if scope.mode is ScopeMode.CONTENT_ADDRESSED and parts[0] == "sha256":
        return ReadTarget(digest_hex=parts[1])
    if scope.mode is ScopeMode.VERSIONED:
        match = _VERSION_SUFFIX.search(rel)
        if match is not None:
            return ReadTarget(name=rel[: match.start()], version=int(match.group(1)))
    return ReadTarget(name=rel)
