"""CSP's holding-cell snapshots: the manifest, its Merkle root, and the seal statement.

A :class:`Manifest` lists the snapshot's state as ``(key, blob digest)``
entries (sorted by key, keys distinct), names its session, its parent
snapshot (None only for a session's first snapshot) and when it was made.
It is stored as canonical JSON (RFC 8785); its SHA-256 names the snapshot
(``snap-`` and the first 32 hex digits) and its Merkle root is the RFC 6962
root over the canonical JSON of each entry, in order.

The seal is an in-toto Statement (subject: the manifest; predicate: snapshot,
session, parent, created, Merkle root, entry count) in a DSSE envelope signed
with SOP's attestation key, logged as a ``csp.seal`` record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sop_verified.core.contracts import ensure, require
from sop_verified.core.request import CONTENT_DIGEST_PATTERN
from sop_verified.errors import ProtocolError
from sop_verified.tools.attest import statement
from sop_verified.tools.canonical import canonical_json, sha256_hex
from sop_verified.tools.merkle import root_hash

__all__ = [
    "BLOBS_ROOT",
    "MANIFESTS_ROOT",
    "MAX_ENTRIES",
    "PREDICATE_SEAL",
    "SESSION_PATTERN",
    "SNAPSHOT_PATTERN",
    "Manifest",
    "ManifestEntry",
    "blob_resource",
    "manifest_resource",
    "parse_manifest_resource",
    "seal_statement",
]

BLOBS_ROOT = "snapshots/csp/blobs"
MANIFESTS_ROOT = "snapshots/csp/manifests"
PREDICATE_SEAL = "https://sop.local/attestation/snapshot-seal/v1"
SESSION_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
SNAPSHOT_PATTERN = r"snap-[0-9a-f]{32}"
MAX_ENTRIES = 4096
_KEY = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,255}$"
_RESOURCE_RE = re.compile(rf"{MANIFESTS_ROOT}/({SESSION_PATTERN})/({SNAPSHOT_PATTERN})\.json")


class ManifestEntry(BaseModel):
    """One piece of state: its key and the digest of its blob."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    key: str = Field(pattern=_KEY)
    digest: str = Field(pattern=CONTENT_DIGEST_PATTERN)


class Manifest(BaseModel):
    """A snapshot's manifest (validated: entries sorted by key, keys distinct)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    session: str = Field(pattern=f"^{SESSION_PATTERN}$")
    parent: str | None = Field(pattern=f"^{SNAPSHOT_PATTERN}$")
    created: int = Field(ge=0, le=2**53)
    entries: tuple[ManifestEntry, ...] = Field(min_length=1, max_length=MAX_ENTRIES)

    @field_validator("entries")
    @classmethod
    def _sorted(cls, v: tuple[ManifestEntry, ...]) -> tuple[ManifestEntry, ...]:
        keys = [e.key for e in v]
        if keys != sorted(set(keys)):
            raise ValueError("entries must be sorted by key, each key once")
        return v

    @classmethod
    def build(
        cls, *, session: str, parent: str | None, created: int, entries: Mapping[str, str]
    ) -> Manifest:
        """A manifest of ``entries`` (key to blob digest).

        Raises:
            ProtocolError: ``bad_manifest`` (a malformed session, parent, key or digest).
        """
        items = [{"key": k, "digest": d} for k, d in sorted(entries.items())]
        raw = {"session": session, "parent": parent, "created": created, "entries": items}
        return cls.parse(canonical_json(raw))

    @classmethod
    @ensure(lambda data, result: result.to_bytes() == data, "the stored form is canonical")
    def parse(cls, data: bytes) -> Manifest:
        """Parse stored manifest bytes strictly; they must be canonical JSON.

        Raises:
            ProtocolError: ``bad_manifest``.
        """
        try:
            manifest = cls.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "manifest"
            raise ProtocolError(
                f"manifest is malformed: {first['msg']}", code="bad_manifest", where=where
            ) from None
        if manifest.to_bytes() != data:
            raise ProtocolError(
                "manifest is not canonical JSON", code="bad_manifest", accepted="RFC 8785 form"
            )
        return manifest

    @ensure(lambda result: result.startswith(b"{"))
    def to_bytes(self) -> bytes:
        """The canonical JSON form (what is stored and signed)."""
        return canonical_json(self.model_dump())

    @ensure(lambda result: re.fullmatch(SNAPSHOT_PATTERN, result) is not None)
    def snapshot_id(self) -> str:
        """The snapshot's id: ``snap-`` and the first 32 hex digits of the manifest's SHA-256."""
        return "snap-" + sha256_hex(self.to_bytes())[:32]

    @ensure(lambda result: len(result) == 64)
    def merkle_root(self) -> str:
        """RFC 6962 root (hex) over the canonical JSON of each entry, in order."""
        return root_hash([canonical_json(e.model_dump()) for e in self.entries]).hex()

    @ensure(lambda self, result: set(result.values()) == {e.digest for e in self.entries})
    def as_dict(self) -> dict[str, str]:
        """The entries as key to digest."""
        return {e.key: e.digest for e in self.entries}


@require(lambda session: re.fullmatch(SESSION_PATTERN, session) is not None)
@ensure(lambda session, result: result.startswith(f"{MANIFESTS_ROOT}/{session}/"))
def manifest_resource(session: str, snapshot: str) -> str:
    """Where the manifest of ``snapshot`` (of ``session``) is stored."""
    return f"{MANIFESTS_ROOT}/{session}/{snapshot}.json"


@ensure(lambda result: result is None or len(result) == 2)
def parse_manifest_resource(resource: str) -> tuple[str, str] | None:
    """``(session, snapshot)`` of a manifest resource, or None."""
    m = _RESOURCE_RE.fullmatch(resource)
    return None if m is None else (m.group(1), m.group(2))


@require(lambda digest: re.fullmatch(CONTENT_DIGEST_PATTERN, digest) is not None)
@ensure(lambda result: result.startswith(BLOBS_ROOT + "/sha256/"))
def blob_resource(digest: str) -> str:
    """Where the blob of ``digest`` is stored (by its digest, in CSP's content-addressed scope)."""
    return f"{BLOBS_ROOT}/sha256/{digest.removeprefix('sha256:')}"


@ensure(lambda result: result["predicateType"] == PREDICATE_SEAL)
def seal_statement(manifest: Manifest, resource: str) -> dict[str, Any]:
    """The in-toto statement a seal signs: the manifest as subject, the snapshot as predicate."""
    predicate = {
        "snapshot": manifest.snapshot_id(),
        "session": manifest.session,
        "parent": manifest.parent,
        "created": manifest.created,
        "merkle_root": manifest.merkle_root(),
        "entries": len(manifest.entries),
    }
    return statement([(resource, sha256_hex(manifest.to_bytes()))], PREDICATE_SEAL, predicate)
