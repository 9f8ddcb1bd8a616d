"""Every newly recorded proof verdict is attested (in-toto in DSSE) and logged (issue 4, item 7)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sop_verified.core.obligations import Verdict
from sop_verified.core.proofgate import Z3ProofGate
from sop_verified.core.proofgate.store import cross_checked_key
from sop_verified.core.request import Obligation
from sop_verified.nexus.config import DEFAULT_CONFIG, init_data_dir
from sop_verified.nexus.demo import OBLIGATIONS, SOUND_POLICIES
from sop_verified.nexus.sop import SOP
from sop_verified.tools.attest import PREDICATE_VERDICT, verify_envelope

NOW = 1_800_000_000


def _verdict_statements(sop: SOP) -> list[dict[str, Any]]:
    assert sop.store is not None and sop.attestation_key is not None
    public = sop.attestation_key.public_key()
    out = []
    for _, _, payload in sop.store.log.log_entries():
        entry = json.loads(payload)
        if entry.get("type") == "attestation" and entry.get("kind") == "proof_verdict":
            out.append(verify_envelope(entry["envelope"], public))
    return out


def test_a_new_verdict_is_attested_once_and_verifies(tmp_path: Path) -> None:
    SOP.init(tmp_path / "d")
    sop = SOP.boot(tmp_path / "d", now=lambda: NOW)
    try:
        (tmp_path / "p.toml").write_text(SOUND_POLICIES)
        sop.activate_policy(tmp_path / "p.toml")
        _, token = sop.admit("emp", ["obligation.submit"], ["verdicts/emp/**"], expires=NOW + 60)
        before = len(_verdict_statements(sop))
        outcome = sop.emp.submit_obligation(OBLIGATIONS[1][1], token=token)  # REFUTED
        again = sop.emp.submit_obligation(OBLIGATIONS[1][1], token=token)
        statements = _verdict_statements(sop)
    finally:
        sop.close()
    assert outcome.verdict is not None and again.verdict == outcome.verdict
    assert len(statements) == before + 1  # attested once, not on the cached repeat
    last = statements[-1]
    assert last["predicateType"] == PREDICATE_VERDICT
    assert last["subject"][0]["digest"]["sha256"] == outcome.verdict.digest.removeprefix("sha256:")
    assert last["predicate"]["verdict"] == "REFUTED"


def test_a_confirmation_by_cvc5_is_sealed_attested_and_survives_a_reboot(tmp_path: Path) -> None:
    # the issue-13 attack, end to end: the same text first under a class without the
    # cross-check, then under `scope`, which the configuration says needs cvc5
    text = "(set-logic QF_LIA)(declare-const x Int)(assert (> x 1))(assert (< x 0))(check-sat)"
    config = DEFAULT_CONFIG + '\n[proofs]\ncross_check = ["scope"]\n'
    init_data_dir(tmp_path / "d", config_text=config)
    sop = SOP.boot(tmp_path / "d", now=lambda: NOW)
    try:
        first = sop.gate.check(Obligation(id="misc:1", format="smt2", source=text))
        confirmed = sop.gate.check(Obligation(id="scope:1", format="smt2", source=text))
        statements = _verdict_statements(sop)
    finally:
        sop.close()
    assert first.verdict is Verdict.PROVED and "cross_check" not in first.evidence
    assert confirmed.verdict is Verdict.PROVED and confirmed.evidence["cross_check"]["agreed"]
    key = cross_checked_key(first.digest)
    subjects = [s["subject"][0]["digest"]["sha256"] for s in statements[-2:]]
    assert subjects == [first.digest.removeprefix("sha256:"), key.removeprefix("sha256:")]
    assert statements[-1]["predicate"]["cross_check"]["verdict"] == "PROVED"
    sop = SOP.boot(tmp_path / "d", now=lambda: NOW)
    try:
        assert isinstance(sop.gate, Z3ProofGate)
        assert sop.gate.store.get(key) is not None  # the confirmation, sealed, after a reboot
        again = sop.gate.check(Obligation(id="scope:2", format="smt2", source=text))
    finally:
        sop.close()
    assert again.verdict is Verdict.PROVED and again.evidence["cross_check"]["agreed"]
