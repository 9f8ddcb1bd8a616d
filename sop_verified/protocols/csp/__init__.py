"""CSP's authority: eligible state, holding-cell snapshots, and resume integrity (INV-7).

:mod:`.manifest` defines the snapshot manifest, its Merkle root and the seal
statement; :class:`SnapshotBook` (:mod:`.book`) holds seals, anchors and
revocations, rebuilt from the log, and derives the lineage obligation;
:mod:`.verify` holds the resume checks; :class:`CspController`
(:mod:`.controller`) carries out ``state.persist``, ``snapshot.seal`` and
``snapshot.resume`` after the kernel's logged ALLOW; :class:`CSP`
(:mod:`.facade`) is ``sop.csp``, the typed facade that builds the bridge requests.
"""

from sop_verified.protocols.csp.book import REVOKE_OP, ROLLBACK_OP, SealRecord, SnapshotBook
from sop_verified.protocols.csp.controller import CspController, LogAccess, ResumeResult, SealSigner
from sop_verified.protocols.csp.facade import CSP
from sop_verified.protocols.csp.manifest import (
    PREDICATE_SEAL,
    Manifest,
    ManifestEntry,
    blob_resource,
    manifest_resource,
    parse_manifest_resource,
    seal_statement,
)
from sop_verified.protocols.csp.verify import verify_blobs, verify_logged, verify_seal

__all__ = [
    "CSP",
    "PREDICATE_SEAL",
    "REVOKE_OP",
    "ROLLBACK_OP",
    "CspController",
    "LogAccess",
    "Manifest",
    "ManifestEntry",
    "ResumeResult",
    "SealRecord",
    "SealSigner",
    "SnapshotBook",
    "blob_resource",
    "manifest_resource",
    "parse_manifest_resource",
    "seal_statement",
    "verify_blobs",
    "verify_logged",
    "verify_seal",
]
