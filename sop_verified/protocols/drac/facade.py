"""DRAC's interface: session phases, the artifact catalog, catalog queries.

``sop.drac`` is this facade. Each call is one bridge request through the
kernel (capability, policy, SOP's derived obligations, the log) and returns
the :class:`~sop_verified.core.request.Decision` with its receipt; effects
happen only after a logged ALLOW::

    sop.drac.open_session("s-1", token=t)              # enters the first phase
    sop.drac.catalog("s-1", "SCAN", "deps.json", data, inputs=[...], token=t)
    sop.drac.complete("s-1", "SCAN", token=t)
    sop.drac.enter("s-1", "RESOLVE", token=t)          # only after SCAN completed
    sop.drac.artifacts(token=t, session="s-1", phase="SCAN").artifacts
"""

from __future__ import annotations

from collections.abc import Sequence

from sop_verified.core.request import Decision
from sop_verified.core.transport import Transport
from sop_verified.protocols.drac.controller import CatalogQuery, DracController
from sop_verified.protocols.drac.phases import SESSIONS_ROOT, PhaseEvent, Step
from sop_verified.protocols.requests import bridge_request, delivered

__all__ = ["DRAC"]


class DRAC:
    """The DRAC protocol's facade (principal ``drac``)."""

    principal = "drac"

    def __init__(self, controller: DracController) -> None:
        self._controller = controller

    @property
    def phases(self) -> tuple[str, ...]:
        """The configured phase order."""
        return self._controller.state.machine.phases

    def status(self, session: str) -> tuple[str, str] | None:
        """Where ``session`` stands: ``(phase, "open" | "completed")``, or None if unknown."""
        return self._controller.state.machine.status(session)

    def open_session(
        self,
        session: str,
        *,
        token: str,
        request_id: str | None = None,
        transport: Transport | None = None,
    ) -> Decision:
        """Open ``session`` by entering the first phase (refused if it exists).

        ``transport`` (every method takes it): what the network transport said about
        a remote call (:mod:`sop_verified.core.transport`); None in-process.
        """
        return self.enter(
            session, self.phases[0], token=token, request_id=request_id, transport=transport
        )

    def enter(
        self,
        session: str,
        phase: str,
        *,
        token: str,
        request_id: str | None = None,
        transport: Transport | None = None,
    ) -> Decision:
        """Enter ``phase``: allowed only right after the previous phase completed and was logged."""
        return self._step(Step(session, phase, PhaseEvent.ENTER), token, request_id, transport)

    def complete(
        self,
        session: str,
        phase: str,
        *,
        token: str,
        request_id: str | None = None,
        transport: Transport | None = None,
    ) -> Decision:
        """Complete ``phase``, the session's open phase."""
        return self._step(Step(session, phase, PhaseEvent.COMPLETE), token, request_id, transport)

    def _step(
        self, step: Step, token: str, request_id: str | None, transport: Transport | None
    ) -> Decision:
        # built as text: a malformed session or phase is the kernel's to deny, not a crash here
        resource = f"{SESSIONS_ROOT}/{step.session}/phases/{step.phase}/{step.event}"
        request = bridge_request(
            self.principal,
            "phase.advance",
            resource,
            token=token,
            request_id=request_id,
            context={"session": step.session, "phase": step.phase},
        )
        return self._controller.step(delivered(request, transport))

    def catalog(
        self,
        session: str,
        phase: str,
        name: str,
        data: bytes,
        *,
        inputs: Sequence[str] = (),
        token: str,
        request_id: str | None = None,
        transport: Transport | None = None,
    ) -> Decision:
        """Store and catalogue an artifact of ``session``'s open ``phase`` with its provenance.

        Args:
            session: the session.
            phase: its open phase.
            name: the artifact's name (path segments of the request grammar).
            data: its bytes.
            inputs: the digests (``sha256:<hex>``) it was made from.
            token: DRAC's capability token.
            request_id: optional; a fresh one by default.
            transport: what the transport said about a remote call; None in-process.

        Returns:
            The decision; on ALLOW its ``record`` is the catalogue's
            :class:`~sop_verified.protocols.drac.catalog.ArtifactRecord` and ``write`` the write.
        """
        request = bridge_request(
            self.principal,
            "artifact.persist",
            f"{SESSIONS_ROOT}/{session}/{phase}/{name}",
            token=token,
            request_id=request_id,
            context={"session": session, "phase": phase},
            data=data,
        )
        return self._controller.catalog(delivered(request, transport), data, list(inputs))

    def artifacts(
        self,
        *,
        token: str,
        session: str | None = None,
        phase: str | None = None,
        digest: str | None = None,
        request_id: str | None = None,
        transport: Transport | None = None,
    ) -> CatalogQuery:
        """Query the catalog (an ``artifact.read`` of the session's catalog, or the whole one)."""
        where = f"{SESSIONS_ROOT}/{session}/catalog" if session else "artifacts/drac/catalog"
        request = bridge_request(
            self.principal,
            "artifact.read",
            where,
            token=token,
            request_id=request_id,
            context={"session": session, "phase": phase},
        )
        return self._controller.query(
            delivered(request, transport), session=session, phase=phase, digest=digest
        )
