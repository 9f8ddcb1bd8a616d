"""Every newly recorded proof verdict is attested (in-toto in DSSE) and logged (issue 4, item 7)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
