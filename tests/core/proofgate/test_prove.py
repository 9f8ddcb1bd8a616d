"""``sop prove FILE``: the verdict, digest, evidence and solver; exit 0 only for PROVED.

The exit status follows the CLI's table: 1 for a verdict that is not a proof (REFUTED,
UNKNOWN), 2 for a file that is not an obligation (REJECTED), never 3 (internal errors only).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from proofgate_helpers import CORPUS, SAT_LIA, UNSAT_LIA

from sop_verified.core.proofgate import obligation_digest
from sop_verified.core.proofgate.prove import prove_command


def _json(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    out = capsys.readouterr().out
    return json.loads(out)  # type: ignore[no-any-return]  # one object


def test_proved_file_exits_zero_with_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ok.smt2"
    path.write_text(UNSAT_LIA)
    assert prove_command(path, json_output=True, rlimit=None) == 0
    payload = _json(capsys)
    assert set(payload) == {"verdict", "digest", "reason", "evidence", "solver"}
    assert payload["verdict"] == "PROVED"
    assert payload["digest"] == obligation_digest("smt2", UNSAT_LIA)
    assert payload["solver"]["name"] == "z3"  # type: ignore[index]  # JSON object


def test_refuted_file_exits_nonzero_with_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "no.smt2"
    path.write_text(SAT_LIA)
    assert prove_command(path, json_output=True, rlimit=None) == 1
    assert _json(capsys)["evidence"] == {"model": {"x": "2"}, "truncated": False}


def test_json_obligation_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ob.json"
    path.write_text(
        json.dumps(
            {
                "logic": "QF_LIA",
                "declarations": {"x": "Int"},
                "assumptions": ["(> x 2)"],
                "goal": "(> x 1)",
            }
        )
    )
    assert prove_command(path, json_output=True, rlimit=None) == 0
    assert _json(capsys)["verdict"] == "PROVED"


def test_rlimit_option_reaches_the_solver(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hard.smt2"
    path.write_text((CORPUS / "qf_slia_narrowing.smt2").read_text())
    assert prove_command(path, json_output=True, rlimit=10) == 1
    payload = _json(capsys)
    assert payload["verdict"] == "UNKNOWN" and str(payload["reason"]).startswith(
        "resource limit: rlimit 10 "
    )


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("bad.smt2", b"(set-logic QF_LIA)(assert \xff)", "encoding"),
        ("big.smt2", b"(assert true)\n" * 5000, "too_large"),
        ("opt.smt2", b"(set-logic QF_LIA)(set-option :verbose 1)", "command"),
        ("ob.txt", b"(set-logic QF_LIA)", "unsupported"),
    ],
)
def test_bad_files_are_rejected_with_exit_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, data: bytes, code: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    assert prove_command(path, json_output=True, rlimit=None) == 2
    payload = _json(capsys)
    assert payload["verdict"] == "REJECTED"
    assert payload["evidence"]["code"] == code  # type: ignore[index]  # JSON object


def test_missing_file_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert prove_command(tmp_path / "absent.smt2", json_output=True, rlimit=None) == 2
    assert _json(capsys)["evidence"] == {"code": "unreadable"}


def test_human_output_shows_verdict_and_digest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ok.smt2"
    path.write_text(UNSAT_LIA)
    assert prove_command(path, json_output=False, rlimit=None) == 0
    out = capsys.readouterr().out
    assert "PROVED" in out and obligation_digest("smt2", UNSAT_LIA)[:20] in out
