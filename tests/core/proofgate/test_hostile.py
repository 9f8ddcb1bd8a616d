"""Hostile obligations: each ends REJECTED or UNKNOWN with a precise reason, within bounds.

After every attack the gate still proves a normal obligation, and no verdict
it had recorded has changed (INV-2, INV-3).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from proofgate_helpers import FACTOR, SAT_LIA, UNSAT_LIA, smt2

from sop_verified.core.obligations import Verdict, VerdictResult
from sop_verified.core.proofgate import GateConfig, InMemoryVerdictStore, Z3ProofGate
from sop_verified.core.request import Obligation

HOSTILE = GateConfig(workers=1, rlimit=300_000, wall_seconds=4.0, cpu_seconds=3, memory_mb=400)


@pytest.fixture(scope="module")
def hostile_gate() -> Iterator[tuple[Z3ProofGate, InMemoryVerdictStore]]:
    store = InMemoryVerdictStore()
    with Z3ProofGate(HOSTILE, store=store) as gate:
        gate.check(smt2(UNSAT_LIA))
        gate.check(smt2(SAT_LIA))
        yield gate, store


def _attack(
    gate: Z3ProofGate, store: InMemoryVerdictStore, obligation: Obligation
) -> tuple[VerdictResult, float]:
    before = {d: store.get(d) for d in store.digests()}
    started = time.perf_counter()
    result = gate.check(obligation)
    elapsed = time.perf_counter() - started
    assert result.verdict in (Verdict.REJECTED, Verdict.UNKNOWN), result
    for digest, record in before.items():
        assert store.get(digest) == record, "a recorded verdict changed"
    follow_up = (
        f"(set-logic QF_LIA)(declare-const y Int)(assert (> y {time.time_ns()}))(assert (< y 0))"
    )
    assert gate.check(smt2(follow_up)).verdict is Verdict.PROVED, "the gate stays up"
    return result, elapsed


def _rejected(result: VerdictResult, code: str) -> None:
    assert result.verdict is Verdict.REJECTED
    assert result.evidence["code"] == code, result.reason


def test_fifty_megabyte_script_is_rejected_by_size_before_parsing(
    hostile_gate: tuple[Z3ProofGate, InMemoryVerdictStore],
) -> None:
    gate, store = hostile_gate
    script = "(set-logic QF_LIA)\n" + "(assert true)\n" * (50 * 1024 * 1024 // 14)
    result, elapsed = _attack(gate, store, smt2(script))
    _rejected(result, "too_large")
    assert elapsed < 1.0


def test_hundred_thousand_deep_nesting_is_rejected(
    hostile_gate: tuple[Z3ProofGate, InMemoryVerdictStore],
) -> None:
    gate, store = hostile_gate
    deep = "(set-logic QF_UF)(assert " + "(not " * 100_000 + "true" + ")" * 100_001
    result, _ = _attack(gate, store, smt2(deep))
    assert result.verdict is Verdict.REJECTED  # too large first; within the size cap, too deep
    shallow_enough = "(set-logic QF_UF)(assert " + "(not " * 5_000 + "true" + ")" * 5_001
    result, elapsed = _attack(gate, store, smt2(shallow_enough))
    _rejected(result, "too_deep")
    assert "line 1" in result.reason and elapsed < 1.0


@pytest.mark.parametrize(
    ("source", "code"),
    [
        (
            '(set-logic QF_LIA)(set-option :regular-output-channel "pwned.txt")(check-sat)',
            "command",
        ),
        ("(set-logic QF_LIA)(set-option :verbose 10)", "command"),
        ("(set-logic QF_LIA)(set-option :smt.random_seed 7)", "command"),
        ('(set-logic QF_LIA)(include "/etc/passwd")', "command"),
        ("(set-logic QF_LIA)(declare-const x Int)(assert (> x 0))(exit)(assert false)", "command"),
        (
            "(set-logic QF_LIA)(declare-const x Int)(declare-const y Int)(assert (= (* x y) 7))",
            "nonlinear",
        ),
        (
            "(set-logic QF_LIA)(declare-const x Int)(assert (forall ((y Int)) (> y x)))",
            "quantifier",
        ),
        ("(set-logic QF_NIA)(declare-const x Int)(assert (= (* x x) 2))", "unsupported"),
        ("(set-logic QF_LIA)(declare-const x Int)(assert (> x " + "9" * 10_000 + "))", "too_large"),
        ("(set-logic QF_LIA)(declare-const x Int)(assert (> x ))", "arity"),
        ("(set-logic QF_LIA)(declare-const |évil| Int)", "syntax"),
        ("(set-logic QF_LIA)(assert (> \udcff 1))", "encoding"),
        ("(set-logic QF_LIA)(declare-const sop!track!0 Bool)(assert sop!track!0)", "symbol"),
        (
            "(set-logic QF_S)(declare-const s String)"
            "(assert (str.in_re s ((_ re.loop 0 100000) re.allchar)))",
            "too_large",
        ),
    ],
)
def test_hostile_script_is_rejected_with_the_reason(
    source: str,
    code: str,
    hostile_gate: tuple[Z3ProofGate, InMemoryVerdictStore],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate, store = hostile_gate
    monkeypatch.chdir(tmp_path)
    result, elapsed = _attack(gate, store, smt2(source))
    _rejected(result, code)
    assert elapsed < 1.0
    assert not (tmp_path / "pwned.txt").exists()


def test_ten_million_digit_literal_is_rejected_fast(
    hostile_gate: tuple[Z3ProofGate, InMemoryVerdictStore],
) -> None:
    gate, store = hostile_gate
    source = "(set-logic QF_LIA)(declare-const x Int)(assert (> x " + "9" * 10_000_000 + "))"
    result, elapsed = _attack(gate, store, smt2(source))
    _rejected(result, "too_large")
    assert elapsed < 1.0


def test_nonlinear_bitvector_search_runs_out_of_rlimit(
    hostile_gate: tuple[Z3ProofGate, InMemoryVerdictStore],
) -> None:
    gate, store = hostile_gate
    result, elapsed = _attack(gate, store, smt2(FACTOR))
    assert result.verdict is Verdict.UNKNOWN
    assert result.reason.startswith("resource limit: rlimit 300000 exhausted")
    assert elapsed < HOSTILE.wall_seconds


def test_quantifier_matching_loop_is_unknown(
    hostile_gate: tuple[Z3ProofGate, InMemoryVerdictStore],
) -> None:
    gate, store = hostile_gate
    bomb = (
        "(set-logic UFLIA)(declare-fun f (Int) Int)(declare-fun g (Int) Int)"
        "(assert (forall ((x Int)) (! (= (f x) (g (f (+ x 1)))) :pattern ((f x)))))"
        "(assert (forall ((x Int)) (! (= (g x) (f (* 2 x))) :pattern ((g x)))))"
        "(assert (= (f 0) 1))"
    )
    result, elapsed = _attack(gate, store, smt2(bomb))
    assert result.verdict is Verdict.UNKNOWN
    assert result.reason.split(":")[0] in ("resource limit", "memory", "solver unknown")
    assert elapsed < HOSTILE.wall_seconds


def test_exponential_macro_expansion_is_stopped(
    hostile_gate: tuple[Z3ProofGate, InMemoryVerdictStore],
) -> None:
    gate, store = hostile_gate
    macros = ["(define-fun f0 ((x Int)) Int (+ x 1))"]
    macros += [
        f"(define-fun f{i} ((x Int)) Int (f{i - 1} (+ (f{i - 1} x) 1)))" for i in range(1, 40)
    ]
    source = "(set-logic QF_LIA)(declare-const y Int)" + "".join(macros) + "(assert (< (f39 y) y))"
    result, elapsed = _attack(gate, store, smt2(source))
    _rejected(result, "too_large")
    assert "expansion" in result.reason and elapsed < 1.0


def test_many_uses_of_a_large_definition_are_capped(
    hostile_gate: tuple[Z3ProofGate, InMemoryVerdictStore],
) -> None:
    gate, store = hostile_gate
    body = "(+ " + " ".join(["x"] * 2000) + ")"
    uses = " ".join(["(big y)"] * 2000)
    source = f"(set-logic QF_LIA)(declare-const y Int)(define-fun big ((x Int)) Int {body})"
    source += f"(assert (> (+ {uses}) 0))"
    result, elapsed = _attack(gate, store, smt2(source))
    _rejected(result, "too_large")
    assert elapsed < 2.0


def test_huge_model_is_truncated(shared_gate: Z3ProofGate) -> None:
    decls = "".join(f"(declare-const v{i} Int)" for i in range(300))
    result = shared_gate.check(smt2("(set-logic QF_LIA)" + decls + "(assert (> v0 v299))"))
    assert result.verdict is Verdict.REFUTED
    assert len(result.evidence["model"]) <= 64


def _check_in_thread(
    gate: Z3ProofGate, obligation: Obligation
) -> tuple[threading.Thread, list[VerdictResult]]:
    out: list[VerdictResult] = []
    thread = threading.Thread(target=lambda: out.append(gate.check(obligation)))
    thread.start()
    return thread, out


def _busy_pid(gate: Z3ProofGate) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = gate.worker_pids()
        if pids:
            time.sleep(0.3)
            return pids[0]
        time.sleep(0.02)
    raise AssertionError("no worker started")


def test_wall_clock_overrun_kills_the_worker_and_is_unknown() -> None:
    config = GateConfig(workers=1, rlimit=10**12, wall_seconds=1.0, cpu_seconds=30)
    with Z3ProofGate(config) as gate:
        gate.warm()
        before = gate.worker_pids()
        started = time.perf_counter()
        result = gate.check(smt2(FACTOR))
        elapsed = time.perf_counter() - started
        assert result.verdict is Verdict.UNKNOWN and result.reason.startswith("timeout")
        assert 1.0 <= elapsed < 3.0
        assert gate.check(smt2(UNSAT_LIA)).verdict is Verdict.PROVED
        assert gate.worker_pids() != before


def test_cpu_cap_kills_the_worker_and_is_unknown() -> None:
    config = GateConfig(workers=1, rlimit=10**12, wall_seconds=20.0, cpu_seconds=1)
    with Z3ProofGate(config) as gate:
        started = time.perf_counter()
        result = gate.check(smt2(FACTOR))
        assert result.verdict is Verdict.UNKNOWN and result.reason.startswith("cpu limit")
        assert time.perf_counter() - started < 10.0
        assert gate.check(smt2(UNSAT_LIA)).verdict is Verdict.PROVED


def test_memory_exhaustion_is_unknown_and_the_worker_is_replaced() -> None:
    width = 512
    decls = "".join(f"(declare-const {v} (_ BitVec {width}))" for v in "abcd")
    bomb = (
        f"(set-logic QF_BV){decls}"
        "(assert (= (bvmul a (bvmul b (bvmul c d))) (bvmul d (bvmul c (bvmul a (bvmul b b))))))"
        "(assert (not (= a b)))(assert (distinct (bvudiv a b) (bvudiv c d) (bvurem a d)))"
    )
    config = GateConfig(workers=1, rlimit=10**12, wall_seconds=30.0, cpu_seconds=30, memory_mb=200)
    with Z3ProofGate(config) as gate:
        gate.warm()
        before = gate.worker_pids()
        result = gate.check(smt2(bomb))
        assert result.verdict is Verdict.UNKNOWN and result.reason.startswith("memory"), (
            result.reason
        )
        assert gate.check(smt2(UNSAT_LIA)).verdict is Verdict.PROVED
        assert gate.worker_pids() != before


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_worker_that_dies_mid_check_is_unknown_and_replaced(sig: signal.Signals) -> None:
    config = GateConfig(workers=1, rlimit=10**12, wall_seconds=20.0, cpu_seconds=30)
    with Z3ProofGate(config) as gate:
        gate.warm()
        thread, out = _check_in_thread(gate, smt2(FACTOR))
        pid = _busy_pid(gate)
        os.kill(pid, sig)
        thread.join(timeout=10)
        assert out and out[0].verdict is Verdict.UNKNOWN
        assert out[0].reason.startswith("worker crash") and f"signal {int(sig)}" in out[0].reason
        assert gate.check(smt2(UNSAT_LIA)).verdict is Verdict.PROVED
        assert pid not in gate.worker_pids()


def test_hung_worker_is_killed_at_the_deadline() -> None:
    config = GateConfig(workers=1, wall_seconds=1.0)
    with Z3ProofGate(config) as gate:
        gate.warm()
        (pid,) = gate.worker_pids()
        os.kill(pid, signal.SIGSTOP)
        started = time.perf_counter()
        result = gate.check(smt2(UNSAT_LIA))
        assert result.verdict is Verdict.UNKNOWN and result.reason.startswith("timeout")
        assert time.perf_counter() - started < 3.0
        assert gate.check(smt2(UNSAT_LIA)).verdict is Verdict.PROVED


def test_unknowns_from_machine_trouble_are_never_recorded() -> None:
    store = InMemoryVerdictStore()
    config = GateConfig(workers=1, rlimit=10**12, wall_seconds=1.0, cpu_seconds=30)
    with Z3ProofGate(config, store=store) as gate:
        assert gate.check(smt2(FACTOR)).reason.startswith("timeout")
    assert store.digests() == []
