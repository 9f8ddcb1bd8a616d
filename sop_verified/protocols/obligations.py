"""The obligations SOP derives for DRAC and CSP requests (the kernel's ``derive`` hook).

- ``phase.advance`` of ``artifacts/drac/sessions/<s>/phases/<P>/<enter|complete>``:
  a :func:`~sop_verified.core.proofgate.derive.phase_order` obligation that
  the step is the session's next one (the previous phase completed and was
  logged);
- ``artifact.persist`` under ``artifacts/drac/sessions/<s>/<P>/``: a
  ``phase_order`` obligation that the session is in phase ``P``, not completed;
- ``snapshot.resume`` of ``snapshots/csp/manifests/<s>/<snapshot>.json``: a
  :func:`~sop_verified.core.proofgate.derive.lineage` obligation that the
  snapshot descends from the session's anchor (INV-7).

A request that names one of these resources badly, or whose
``context.session``/``context.phase`` disagree with its resource, gets an
obligation that is refuted: it is denied by the gate like any other. A
``phase.advance`` outside DRAC's session namespace names no step: it gets no
obligation, and DRAC's controller gives it no effect.
"""

from __future__ import annotations

from sop_verified.core.contracts import ensure
from sop_verified.core.proofgate.derive import lineage, phase_order
from sop_verified.core.request import Obligation, Request
from sop_verified.protocols.csp.book import SnapshotBook
from sop_verified.protocols.csp.manifest import parse_manifest_resource
from sop_verified.protocols.drac.catalog import DracState
from sop_verified.protocols.drac.phases import SESSIONS_ROOT, parse_artifact, parse_step

__all__ = ["DERIVING_ACTIONS", "protocol_obligations"]

DERIVING_ACTIONS = frozenset({"phase.advance", "artifact.persist", "snapshot.resume"})
"""Actions that may carry a protocol obligation (the others never do)."""


def _refuted_phase() -> Obligation:
    return phase_order(("NONE",), "", "NONE")  # the current state is unknown: refuted


def _agrees(request: Request, session: str, phase: str | None) -> bool:
    ctx = request.context
    if "session" in ctx and ctx["session"] != session:
        return False
    return phase is None or "phase" not in ctx or ctx["phase"] == phase


@ensure(lambda request, result: request.action in DERIVING_ACTIONS or not result)
def protocol_obligations(
    request: Request, drac: DracState | None, book: SnapshotBook | None
) -> list[Obligation]:
    """The DRAC and CSP obligations of ``request`` (an empty list for every other request).

    Args:
        request: the parsed request.
        drac: DRAC's state (None before the protocols booted).
        book: CSP's snapshot book (None before the protocols booted).

    Returns:
        The obligations; each must be PROVED by the gate for an ALLOW.

    Raises:
        RuntimeError: the request needs protocol state and none is wired (the kernel
            turns this into DENY, INV-2).
    """
    action, resource = request.action, request.resource
    if action == "snapshot.resume":
        return [_lineage(request, book)]
    if action in ("phase.advance", "artifact.persist") and resource.startswith(SESSIONS_ROOT + "/"):
        if drac is None:
            raise RuntimeError("DRAC's state is not wired")
        return [_phase(request, drac)]
    return []


def _phase(request: Request, drac: DracState) -> Obligation:
    if request.action == "phase.advance":
        step = parse_step(request.resource)
        if step is None or not _agrees(request, step.session, step.phase):
            return _refuted_phase()
        return drac.machine.step_obligation(step)
    target = parse_artifact(request.resource)
    if target is None or not _agrees(request, target[0], target[1]):
        return _refuted_phase()
    return drac.machine.open_obligation(target[0], target[1])


def _lineage(request: Request, book: SnapshotBook | None) -> Obligation:
    if book is None:
        raise RuntimeError("CSP's snapshot book is not wired")
    target = parse_manifest_resource(request.resource)
    if target is None or not _agrees(request, target[0], None):
        return lineage({}, "(unknown)", "(none)")  # no chain: refuted
    return book.lineage_obligation(*target)
