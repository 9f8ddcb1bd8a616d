"""DRAC's authority: the per-session phase machine and the artifact catalog.

``DracState`` (:mod:`.catalog`) is rebuilt from the log; ``DracController``
(:mod:`.controller`) carries out ``phase.advance``, catalogued
``artifact.persist`` and catalog queries after the kernel's logged ALLOW;
:mod:`.phases` holds the phase order, the resource grammar and the
``phase_order`` obligations the kernel derives; :class:`DRAC` (:mod:`.facade`)
is ``sop.drac``, the typed facade that builds the bridge requests.
"""

from sop_verified.protocols.drac.catalog import ArtifactRecord, DracState, check_inputs, provenance
from sop_verified.protocols.drac.controller import CatalogQuery, DracController
from sop_verified.protocols.drac.facade import DRAC
from sop_verified.protocols.drac.phases import (
    DEFAULT_PHASES,
    PhaseEvent,
    PhaseMachine,
    Step,
    artifact_resource,
    check_phases,
    parse_artifact,
    parse_step,
    step_resource,
)

__all__ = [
    "DEFAULT_PHASES",
    "DRAC",
    "ArtifactRecord",
    "CatalogQuery",
    "DracController",
    "DracState",
    "PhaseEvent",
    "PhaseMachine",
    "Step",
    "artifact_resource",
    "check_inputs",
    "check_phases",
    "parse_artifact",
    "parse_step",
    "provenance",
    "step_resource",
]
