"""The proof gate: SMT obligations checked by z3, isolated, deterministic, immutable.

See spec/OBLIGATIONS.md for the obligation language, the caps, the verdicts
and the determinism contract.

The names are loaded on first use (PEP 562): the solver's worker process,
``python -m sop_verified.core.proofgate.worker``, imports this package first,
and a worker that loaded the gate, the request model and the derivations it
never uses started in 0.45 s instead of about 0.1 s (every boot starts one).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sop_verified.core.proofgate.derive import (
        lineage,
        narrowing,
        phase_order,
        scope_containment,
    )
    from sop_verified.core.proofgate.gate import GateConfig, Z3ProofGate, obligation_class
    from sop_verified.core.proofgate.prove import prove_command
    from sop_verified.core.proofgate.replay import ReplayReport
    from sop_verified.core.proofgate.sexpr import FilterLimits
    from sop_verified.core.proofgate.smtlib import CompiledObligation, compile_smt2
    from sop_verified.core.proofgate.store import (
        InMemoryVerdictStore,
        VerdictRecord,
        VerdictStore,
        obligation_digest,
    )
    from sop_verified.core.proofgate.structured import compile_structured

__all__ = [
    "CompiledObligation",
    "FilterLimits",
    "GateConfig",
    "InMemoryVerdictStore",
    "ReplayReport",
    "VerdictRecord",
    "VerdictStore",
    "Z3ProofGate",
    "compile_smt2",
    "compile_structured",
    "lineage",
    "narrowing",
    "obligation_class",
    "obligation_digest",
    "phase_order",
    "prove_command",
    "scope_containment",
]

_MODULES = {
    "derive": ("lineage", "narrowing", "phase_order", "scope_containment"),
    "gate": ("GateConfig", "Z3ProofGate", "obligation_class"),
    "prove": ("prove_command",),
    "replay": ("ReplayReport",),  # the function: `proofgate.replay.replay` (a name the
    # package cannot lend: importing the submodule binds `replay` to it)
    "sexpr": ("FilterLimits",),
    "smtlib": ("CompiledObligation", "compile_smt2"),
    "store": ("InMemoryVerdictStore", "VerdictRecord", "VerdictStore", "obligation_digest"),
    "structured": ("compile_structured",),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    """Load a public name on first use (PEP 562)."""
    try:
        module = _HOME[name]
    except KeyError:
        raise AttributeError(f"module `{__name__}` has no attribute `{name}`") from None
    return getattr(import_module(f"{__name__}.{module}"), name)
