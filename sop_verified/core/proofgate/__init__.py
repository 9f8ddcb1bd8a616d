"""The proof gate: SMT obligations checked by z3, isolated, deterministic, immutable.

See spec/OBLIGATIONS.md for the obligation language, the caps, the verdicts
and the determinism contract.
"""

from sop_verified.core.proofgate.derive import lineage, narrowing, phase_order, scope_containment
from sop_verified.core.proofgate.gate import GateConfig, Z3ProofGate, obligation_class
from sop_verified.core.proofgate.prove import prove_command
from sop_verified.core.proofgate.replay import ReplayReport, replay
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
    "replay",
    "scope_containment",
]
