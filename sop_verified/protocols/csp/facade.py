"""CSP's interface: eligible state, holding-cell snapshots, resume.

``sop.csp`` is this facade. Each call is one bridge request through the
kernel and returns its :class:`~sop_verified.core.request.Decision` (with the
receipt) or, for a resume, a :class:`~sop_verified.protocols.csp.ResumeResult`::

    d = sop.csp.put_blob(b"...", state_class="working", token=t)   # stored by digest
    digest = d.write.digest                                        # d.write: what was stored
    s = sop.csp.seal("agent-1", {"wm": digest}, parent=None, token=t)
    snapshot = s.record.snapshot                                   # s.record: the SealRecord
    r = sop.csp.resume("agent-1", snapshot, token=t)               # r.state == {"wm": b"..."}

Which state classes may be persisted where is the active policy's to say
(``context.state_class``); a resume verifies everything INV-7 names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from sop_verified.core.request import Decision
from sop_verified.core.transport import Transport
from sop_verified.protocols.csp.controller import CspController, ResumeResult
from sop_verified.protocols.csp.manifest import blob_resource, manifest_resource
from sop_verified.protocols.requests import bridge_request, delivered

__all__ = ["CSP"]

DEFAULT_STATE_CLASS = "working"


class CSP:
    """The CSP protocol's facade (principal ``csp``).

    Every method takes ``transport``: what the network transport said about a
    remote call (:mod:`sop_verified.core.transport`); None in-process.
    """

    principal = "csp"

    def __init__(self, controller: CspController) -> None:
        self._controller = controller

    def persist_state(
        self,
        key: str,
        data: bytes,
        *,
        state_class: str,
        token: str,
        session: str | None = None,
        request_id: str | None = None,
        transport: Transport | None = None,
    ) -> Decision:
        """Persist state of ``state_class`` under ``state/csp/<key>`` (versioned), if eligible."""
        request = bridge_request(
            self.principal,
            "state.persist",
            f"state/csp/{key}",
            token=token,
            request_id=request_id,
            context={"state_class": state_class, "session": session},
            data=data,
        )
        return self._controller.persist_state(delivered(request, transport), data)

    def put_blob(
        self,
        data: bytes,
        *,
        state_class: str,
        token: str,
        request_id: str | None = None,
        transport: Transport | None = None,
    ) -> Decision:
        """Store a snapshot blob by its digest (``write.digest`` on ALLOW)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        request = bridge_request(
            self.principal,
            "state.persist",
            blob_resource(digest),
            token=token,
            request_id=request_id,
            context={"state_class": state_class},
            data=data,
        )
        return self._controller.persist_state(delivered(request, transport), data)

    def seal(
        self,
        session: str,
        entries: Mapping[str, str],
        *,
        parent: str | None,
        token: str,
        state_class: str = DEFAULT_STATE_CLASS,
        request_id: str | None = None,
        transport: Transport | None = None,
    ) -> Decision:
        """Seal a snapshot of ``entries`` (key to stored blob digest) as a child of ``parent``.

        Returns:
            The decision; on ALLOW its ``record`` is the
            :class:`~sop_verified.protocols.csp.book.SealRecord` (the snapshot id, the
            Merkle root and the seal's log index and receipt).

        Raises:
            ProtocolError: ``bad_manifest`` (a malformed session, parent, key or digest).
        """
        manifest = self._controller.manifest(session, entries, parent)
        data = manifest.to_bytes()
        request = bridge_request(
            self.principal,
            "snapshot.seal",
            manifest_resource(session, manifest.snapshot_id()),
            token=token,
            request_id=request_id,
            context={"session": session, "state_class": state_class},
            data=data,
        )
        return self._controller.seal(delivered(request, transport), manifest)

    def resume(
        self,
        session: str,
        snapshot: str,
        *,
        token: str,
        state_class: str = DEFAULT_STATE_CLASS,
        request_id: str | None = None,
        transport: Transport | None = None,
    ) -> ResumeResult:
        """Resume ``snapshot`` of ``session``: the state only if INV-7 holds."""
        request = bridge_request(
            self.principal,
            "snapshot.resume",
            f"snapshots/csp/manifests/{session}/{snapshot}.json",
            token=token,
            request_id=request_id,
            context={"session": session, "state_class": state_class},
        )
        return self._controller.resume(delivered(request, transport))
