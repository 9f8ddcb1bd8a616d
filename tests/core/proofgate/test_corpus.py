"""The corpus: SMT-LIB obligations with a known status, checked by z3, cvc5 and the gate.

Each file in corpus/ was written for this project and states its status with
``(set-info :status ...)``. Both solvers, run directly on the original text,
must give that status; the gate must accept the file and answer PROVED for
``unsat`` and REFUTED for ``sat``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cvc5
import pytest
import z3
from proofgate_helpers import CORPUS, smt2

from sop_verified.core.obligations import Verdict
from sop_verified.core.proofgate import Z3ProofGate, compile_smt2
from sop_verified.core.proofgate.logics import LOGICS

FILES = sorted(CORPUS.glob("*.smt2"))
RLIMIT = 5_000_000


def _z3_status(text: str) -> str:
    solver = z3.Solver()
    solver.set("rlimit", RLIMIT)
    solver.from_string(text)
    return str(solver.check())


def _cvc5_status(text: str) -> str:
    tm = cvc5.TermManager()
    solver = cvc5.Solver(tm)
    solver.setOption("rlimit-per", str(RLIMIT))
    symbols = cvc5.SymbolManager(tm)
    parser = cvc5.InputParser(solver, symbols)
    parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text, "corpus")
    answer = ""
    while not (command := parser.nextCommand()).isNull():
        out = str(command.invoke(solver, symbols)).strip()
        answer = out or answer
    return answer


def test_corpus_is_large_and_covers_every_logic() -> None:
    assert len(FILES) >= 60
    logics = Counter(compile_smt2(f.read_text()).logic for f in FILES)
    assert set(logics) == set(LOGICS)
    statuses = Counter(compile_smt2(f.read_text()).status for f in FILES)
    assert statuses["unsat"] >= 30 and statuses["sat"] >= 15


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_corpus_status_agrees_with_z3_cvc5_and_the_gate(
    path: Path, shared_gate: Z3ProofGate
) -> None:
    text = path.read_text()
    status = compile_smt2(text).status
    assert status in ("sat", "unsat"), "every corpus file states its status"
    assert _z3_status(text) == status
    assert _cvc5_status(text) == status
    result = shared_gate.check(smt2(text, oid=f"corpus:{path.stem}"))
    assert result.verdict is (Verdict.PROVED if status == "unsat" else Verdict.REFUTED), (
        result.reason
    )
    if result.verdict is Verdict.REFUTED:
        assert result.evidence["model"], "a refutation carries its counterexample"
    else:
        assert isinstance(result.evidence["unsat_core"], list)
