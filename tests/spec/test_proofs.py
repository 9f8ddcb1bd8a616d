"""The proofs: every invariant PROVED on the model, and every seeded bug caught by name."""

from __future__ import annotations

from typing import Any

import pytest
import z3

from sop_verified.errors import InputError
from sop_verified.proofs import induction
from sop_verified.proofs.bmc import BOOT_CHECKS, WITNESSES
from sop_verified.proofs.check import run_all
from sop_verified.proofs.render import counterexample_text
from sop_verified.proofs.results import CheckReport, Result
from sop_verified.spec.invariants import INVARIANTS
from sop_verified.spec.model import MUTATIONS, TRANSITIONS

INV_IDS = [f"INV-{n}" for n in range(1, 12)]


def _failures(report: CheckReport) -> set[tuple[str, str]]:
    return {(r.inv, r.transition) for r in report.failures}


def test_every_check_of_the_real_model_is_proved(proof_report: tuple[CheckReport, float]) -> None:
    report, _ = proof_report
    assert [r for r in report.results if r.verdict != "PROVED"] == []
    assert report.ok


def test_full_check_finishes_within_a_minute(proof_report: tuple[CheckReport, float]) -> None:
    _, seconds = proof_report
    assert seconds <= 60.0, f"the full check took {seconds:.1f} s"


def test_every_invariant_is_checked_against_every_transition(
    proof_report: tuple[CheckReport, float],
) -> None:
    report, _ = proof_report
    done = {(r.inv, r.transition, r.method) for r in report.results}
    for inv in INVARIANTS:
        for t in TRANSITIONS:
            assert (inv.id, t.name, "inductive") in done
        if inv.state is not None:
            assert (inv.id, "init", "base") in done
    assert {r.inv for r in report.results} >= set(INV_IDS)


def test_boot_order_is_checked_by_bmc_for_graphs_up_to_five_services(
    proof_report: tuple[CheckReport, float],
) -> None:
    report, _ = proof_report
    rows = {r.transition: r for r in report.results if r.inv == "INV-8" and r.method != "base"}
    for name in BOOT_CHECKS:
        assert rows[name].method == "bmc(k=5)"
        assert rows[name].verdict == "PROVED"


def test_no_transition_is_vacuous_and_the_happy_paths_are_reachable(
    proof_report: tuple[CheckReport, float],
) -> None:
    report, _ = proof_report
    enabled = {r.transition for r in report.results if r.name == "transition_enabled" and r.ok}
    assert enabled == {t.name for t in TRANSITIONS}
    reached = {r.name for r in report.results if r.method.startswith("witness") and r.ok}
    assert reached == {name for name, _, _ in WITNESSES}


def test_revoke_that_forgets_descendants_breaks_inv10(revoke_mutant_report: CheckReport) -> None:
    report = revoke_mutant_report
    assert not report.ok
    (fail,) = [r for r in report.failures if r.method == "inductive"]
    assert (fail.inv, fail.name, fail.transition, fail.verdict) == (
        "INV-10",
        "attenuation_only",
        "revoke",
        "FAILED",
    )
    cex = fail.counterexample
    assert cex is not None
    assert any("revoked when its parent is revoked" in b for b in cex.broken)
    assert cex.before is not None
    child = _unrevoked_child_of_revoked(cex.after)
    assert child is not None, cex.after["capabilities"]
    assert cex.inputs["channel"] == "admin"


def _unrevoked_child_of_revoked(state: dict[str, Any]) -> dict[str, Any] | None:
    caps: dict[int, dict[str, Any]] = {c["slot"]: c for c in state["capabilities"]}
    for cap in caps.values():
        parent = caps.get(cap["parent"]) if cap["parent"] is not None else None
        if parent is not None and parent["revoked"] and not cap["revoked"]:
            return cap
    return None


def test_inv10_counterexample_is_reachable_and_readable(revoke_mutant_report: CheckReport) -> None:
    (fail,) = [r for r in revoke_mutant_report.failures if r.inv == "INV-10"]
    cex = fail.counterexample
    assert cex is not None
    steps = [t["step"] for t in cex.trace]
    assert steps[0] == "init"
    assert steps[-1] == "revoke"
    assert "attenuate" in steps
    assert _unrevoked_child_of_revoked(cex.trace[-1]["state"]) is not None
    text = counterexample_text(cex)
    for part in (
        "INV-10 attenuation_only",
        "state before:",
        "step: revoke(",
        "state after",
        "revoked when its parent is revoked",
        "reachable from an initial state",
    ):
        assert part in text
    as_dict = cex.to_dict()
    assert as_dict["step"]["transition"] == "revoke"
    assert as_dict["before"] == cex.before
    assert as_dict["after"] == cex.after


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_seeded_bug_is_caught_naming_its_invariant(mutation: str) -> None:
    bug = MUTATIONS[mutation]
    report = run_all(frozenset({mutation}), trace_depth=0, focus=frozenset(bug.transitions))
    assert not report.ok
    caught = {(r.inv, r.transition) for r in report.failures}
    assert {(bug.breaks, t) for t in bug.transitions} <= caught
    for r in report.failures:
        assert r.verdict == "FAILED"
        assert r.counterexample is not None
        assert r.counterexample.broken
        assert r.counterexample.inv == r.inv


ALSO_BROKEN: dict[str, set[str]] = {
    # an overwritten ALLOW no longer backs its effect
    "log_overwrites_when_full": {"INV-9"},
    # a derived change without a log append is also one a replayed seal could undo
    "admin_unlogged": {"INV-11"},
    "verdict_overwrite": {"INV-11"},
    # forged rows, read back unchecked, break everything they feed
    "boot_skips_store_check": {"AUX-1", "INV-3", "INV-4", "INV-9", "INV-10"},
}
"""Other invariants a seeded bug breaks besides its own, and why."""


@pytest.mark.slow
@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_full_check_names_exactly_the_broken_invariant(mutation: str) -> None:
    bug = MUTATIONS[mutation]
    report = run_all(frozenset({mutation}))
    broken = {r.inv for r in report.failures if r.inv != "SANITY"}
    expected = {bug.breaks} | ALSO_BROKEN.get(mutation, set())
    assert broken == expected
    for r in report.failures:
        if r.method == "inductive" and r.counterexample and r.counterexample.trace:
            assert r.counterexample.trace[-1]["step"] == r.transition


def test_the_storage_attacker_is_a_transition_every_invariant_is_proved_against(
    proof_report: tuple[CheckReport, float],
) -> None:
    assert "tamper_store" in {t.name for t in TRANSITIONS}
    rows = [r for r in proof_report[0].results if r.transition == "tamper_store"]
    assert {r.inv for r in rows if r.method == "inductive"} == {i.id for i in INVARIANTS}
    assert all(r.verdict == "PROVED" for r in rows)


def test_boot_without_the_seal_check_decides_on_forged_rows() -> None:
    """Drop the boot check: Z3 finds a run in which the attacker's rows become SOP's state.

    The run must go through `tamper_store` and end READY on a store that fails
    the check: this fails if the attacker is taken out of the model (no such
    run exists) as well as if the check stops mattering.
    """
    report = run_all(
        frozenset({"boot_skips_store_check"}), witnesses=False, focus=frozenset({"boot"})
    )
    (fail,) = [r for r in report.failures if r.inv == "INV-11"]
    cex = fail.counterexample
    assert cex is not None
    assert any("change only with a log append" in b for b in cex.broken)
    steps = [t["step"] for t in cex.trace]
    assert "tamper_store" in steps, steps
    assert steps[-1] == "boot"
    end = cex.trace[-1]["state"]
    assert end["health"] == "READY"
    assert end["store"]["passes_check"] is False


def test_with_the_boot_check_a_tampered_store_fails_boot(
    proof_report: tuple[CheckReport, float],
) -> None:
    rows = {r.name: r for r in proof_report[0].results if r.method.startswith("witness")}
    assert rows["tampered_store_refused"].verdict == "PROVED"
    boot = [r for r in proof_report[0].results if r.transition == "boot" and r.inv == "INV-11"]
    assert [r.verdict for r in boot] == ["PROVED"]


def test_the_digest_assumption_is_needed_and_the_attacker_uses_it() -> None:
    """Without the assumption Z3 picks digest values that let a forged table pass the check."""
    report = run_all(
        frozenset({"digests_forgeable"}), trace_depth=0, focus=frozenset({"tamper_store"})
    )
    (fail,) = [r for r in report.failures if r.inv == "INV-11"]
    assert fail.transition == "tamper_store"
    cex = fail.counterexample
    assert cex is not None
    assert any("pass the seal check are the rows SOP decides on" in b for b in cex.broken)
    assert cex.after["store"]["passes_check"] is True
    assert cex.after["store"]["tampered"]


def test_unknown_mutation_is_refused() -> None:
    with pytest.raises(InputError, match="unknown mutation `no_such_bug`"):
        run_all(frozenset({"no_such_bug"}))


def test_unknown_focus_is_refused() -> None:
    with pytest.raises(InputError, match="unknown check `nope`"):
        run_all(focus=frozenset({"nope"}))


def test_solver_unknown_counts_as_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(induction, "RLIMIT", 1)
    report = run_all(trace_depth=0, focus=frozenset({"decide"}))
    assert not report.ok
    unknown = [r for r in report.results if r.verdict == "UNKNOWN"]
    assert unknown
    assert all(not r.ok for r in unknown)


def test_verdicts_map_fail_closed() -> None:
    assert induction.verdict_of(z3.unsat) == "PROVED"
    assert induction.verdict_of(z3.sat) == "FAILED"
    assert induction.verdict_of(z3.unknown) == "UNKNOWN"
    assert induction.witness_verdict(z3.unknown) == "UNKNOWN"


def test_empty_or_unknown_report_is_not_ok() -> None:
    assert not CheckReport([], 0.0, "z3").ok
    unknown = Result("INV-1", "deny_by_default", "decide", "inductive", "UNKNOWN", 0.0)
    proved = Result("INV-1", "deny_by_default", "admit", "inductive", "PROVED", 0.0)
    assert not CheckReport([proved, unknown], 0.0, "z3").ok
    assert CheckReport([proved], 0.0, "z3").ok
