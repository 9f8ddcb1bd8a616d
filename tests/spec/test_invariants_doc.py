"""spec/INVARIANTS.md says what the code of spec/ and proofs/ does (names, bugs, universe)."""

from __future__ import annotations

import re
from pathlib import Path

from sop_verified import spec
from sop_verified.proofs.check import UNIVERSE
from sop_verified.spec import invariants as spec_invariants
from sop_verified.spec.invariants import INVARIANTS
from sop_verified.spec.model import MUTATIONS, TRANSITIONS

DOC = (Path(spec.__file__).resolve().parent / "INVARIANTS.md").read_text(encoding="utf-8")

DESIGN_NAMES = {
    "INV-1": "deny_by_default",
    "INV-2": "fail_closed",
    "INV-3": "proof_immutability",
    "INV-4": "scope_confinement",
    "INV-5": "log_append_only",
    "INV-6": "no_bridge_remediation",
    "INV-7": "resume_integrity",
    "INV-8": "deterministic_boot",
    "INV-9": "effect_after_record",
    "INV-10": "attenuation_only",
    "INV-11": "stored_state_authenticated",
}


def _section(inv_id: str) -> str:
    match = re.search(rf"^### {inv_id} .*?(?=^### |^## )", DOC, re.S | re.M)
    assert match is not None, inv_id
    return match.group(0)


def test_every_invariant_has_its_design_name_in_doc_and_registry() -> None:
    registry = {i.id: i.name for i in INVARIANTS if i.id.startswith("INV-")}
    assert registry == DESIGN_NAMES
    for inv_id, name in DESIGN_NAMES.items():
        assert _section(inv_id).startswith(f"### {inv_id} {name}\n")


def test_every_section_states_all_its_parts() -> None:
    for inv_id in DESIGN_NAMES:
        text = _section(inv_id)
        for part in (
            "**Statement.**",
            "**Rationale.**",
            "**Formal.**",
            "**Enforced.**",
            "**Proved.**",
            "**Seeded bug",
            "**Tested.**",
        ):
            assert part in text, (inv_id, part)


def test_formal_names_are_the_predicates_of_the_registry() -> None:
    for inv in INVARIANTS:
        if not inv.id.startswith("INV-"):
            continue
        text = _section(inv.id)
        for fn in (inv.state, inv.step):
            if fn is not None:
                assert f"`{fn.__name__}(" in text, (inv.id, fn.__name__)
                assert getattr(spec_invariants, fn.__name__) is fn


def test_every_seeded_bug_is_documented_under_its_invariant() -> None:
    for name, bug in MUTATIONS.items():
        assert f"`{name}`" in _section(bug.breaks), name


def test_every_transition_is_documented() -> None:
    for t in TRANSITIONS:
        assert f"`{t.name}`" in DOC, t.name
    assert f"the {len(TRANSITIONS)} transitions" in DOC


def test_bounded_universe_table_matches_the_model() -> None:
    table = DOC.split("### The bounded universe", 1)[1].split("Times,", 1)[0]
    numbers = [int(n) for n in re.findall(r"^\|[^|]+\| (\d+) \|$", table, re.M)]
    assert numbers == list(UNIVERSE.values())
