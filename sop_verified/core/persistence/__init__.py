"""The Persistence_Controller: scopes, confinement (INV-4), effects after record (INV-9).

The only way bytes reach disk. The API the protocol layer builds on::

    from sop_verified.core.persistence import PersistenceController, ReadResult

    # nexus wires it: sop.persistence (None until booted)
    decision = sop.submit(request)                   # the kernel decides and logs
    decision = sop.persistence.execute(decision, request, data)
    result = sop.persistence.read(decision, request)  # ReadResult(decision, data, record)

or, in one call each, ``SOP.persist(request, data) -> Decision`` and
``SOP.read(request) -> ReadResult``, which bind ``content_digest`` and
``context.size_bytes`` when the request does not carry them.

- :meth:`PersistenceController.execute` ``(decision, request, data) -> Decision``:
  writes only for an ALLOW persist decision that is logged and still pending
  (INV-9), into a declared scope the principal owns (INV-4), within its size
  limit, with the digest and size the request bound; returns the ALLOW with
  ``write`` (``outcome``, ``index``, ``scope``, ``name``, ``stored``,
  ``digest``, ``size``, ``version``, ``receipt``), or a DENY whose reason has
  stage ``persistence`` and a ``code``: ``unknown_scope``, ``foreign_scope``,
  ``too_large``, ``size_mismatch``, ``digest_mismatch``,
  ``write_once_violation``, ``reserved_name``, a confinement code
  (``symlink``, ``hard_link``, ``dot_component``, ``bad_name``, ...),
  ``not_pending``, ``decision_mismatch``, ``decision_in_use``, ``unrecorded``,
  ``not_ready``, ``storage_error``. Every refusal is logged.
- :meth:`PersistenceController.execute_linked_batch` ``(submit_batch, writes)``:
  small content-addressed writes (planned by :meth:`PersistenceController.linked_plan`)
  decided by the kernel and stored with their decisions, one durable
  transaction for the batch (docs/adr/0007, docs/adr/0008);
  :class:`.pipeline.LinkedWrites` batches them from concurrent callers for
  ``SOP.persist``.
- :meth:`PersistenceController.read` ``(decision, request, *, resource=None) -> ReadResult``:
  for ``artifact.read`` (and ``snapshot.resume``, which may name the objects
  the snapshot needs); on every read the bytes are verified against the digest
  of the object's effect entry in the log, proved included under the signed
  checkpoint, never against the database alone (``integrity``, and the
  integrity alarm: :attr:`PersistenceController.alarms`).
- :meth:`PersistenceController.lookup` ``(scope, name, version=None)`` and
  :meth:`PersistenceController.objects` ``(scope, name=None)``: the index
  (:class:`~sop_verified.storage.persist_index.ObjectRecord`: name, version,
  stored path, digest, size, decision and effect indexes, time).
- :meth:`PersistenceController.recover` (boot repair) and
  :meth:`PersistenceController.apply_retention` ``(now)``.

Modes (:class:`ScopeMode`): content-addressed (blobs named by SHA-256;
``<prefix>/sha256/<hex>`` reads or writes a blob by digest), write-once (a
name is written once: the same bytes again is ``unchanged``, other bytes are
refused), versioned (each write a new version; ``<name>@v<N>`` reads version
N). Entries: ``persist.effect`` and ``persist.tombstone``
(:mod:`.entries`). Design: docs/adr/0005-persistence.md.
"""

from __future__ import annotations

from sop_verified.core.persistence.controller import PersistenceController
from sop_verified.core.persistence.entries import (
    EFFECT_TYPE,
    TOMBSTONE_TYPE,
    EffectOutcome,
    index_entries,
)
from sop_verified.core.persistence.maintenance import RecoveryReport
from sop_verified.core.persistence.outcomes import ReadResult
from sop_verified.core.persistence.reads import READ_ACTIONS
from sop_verified.core.persistence.scopes import Retention, Scope, ScopeMode, ScopeTable

__all__ = [
    "EFFECT_TYPE",
    "READ_ACTIONS",
    "TOMBSTONE_TYPE",
    "EffectOutcome",
    "PersistenceController",
    "ReadResult",
    "RecoveryReport",
    "Retention",
    "Scope",
    "ScopeMode",
    "ScopeTable",
    "index_entries",
]
