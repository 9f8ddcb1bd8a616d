"""The formal model of SOP: the state machine in Z3 and the invariants INV-1 … INV-11.

spec/INVARIANTS.md is the source of truth in English; :mod:`sop_verified.spec.model`
holds the state machine, :mod:`sop_verified.spec.invariants` the predicates,
:mod:`sop_verified.spec.boot_order` INV-8's boot order. proofs/ discharges them.
"""

__all__: list[str] = []
