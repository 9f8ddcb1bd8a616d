"""SOP derives its own obligations and sends them through the proof gate (issue 3, item 6)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from sop_verified.core.obligations import Verdict, VerdictResult
from sop_verified.core.policy import PolicySet, load_path
from sop_verified.core.request import Obligation, Permission, Stage
from sop_verified.errors import AttenuationError
from sop_verified.nexus.sop import SOP

NOW = 1_800_000_000

WIDE = """
[[policy]]
id = "slipped-past-governance"
effect = "permit"
principal = ["drac"]
action = ["artifact.persist"]
resource = "*"
channel = "bridge"
"""


def _req(token: str, resource: str) -> dict[str, object]:
    return {
        "request_id": "r-1",
        "principal": "drac",
        "action": "artifact.persist",
        "resource": resource,
        "capability": token,
        "context": {"size_bytes": 1},
    }


def test_persist_outside_approved_scopes_fails_its_derived_obligation(tmp_path: Path) -> None:
    SOP.init(tmp_path / "d")
    sop = SOP.boot(tmp_path / "d", now=lambda: NOW)
    try:
        (tmp_path / "wide.toml").write_text(WIDE)
        # a set that never passed governance (say, a compromised store) is in force
        sop.services.policy.activate(PolicySet(load_path(tmp_path / "wide.toml")))
        _, token = sop.admit("drac", ["artifact.persist"], ["**"], expires=NOW + 60)
        inside = sop.submit(_req(token, "artifacts/drac/s1/a.bin"))
        outside = sop.submit(_req(token, "etc/cron.d/evil"))
    finally:
        sop.close()
    assert inside.effect is Permission.ALLOW
    assert outside.effect is Permission.DENY
    reason = outside.reasons[0]
    assert (reason.stage, reason.code) == (Stage.OBLIGATION, "obligation_refuted")
    assert reason.obligation is not None and reason.obligation.startswith("scope:")


class RefusingGate:
    """A gate that proves nothing: every obligation UNKNOWN."""

    def check(self, obligation: Obligation) -> VerdictResult:
        return VerdictResult(Verdict.UNKNOWN, "sha256:00", "refusing gate")

    def check_many(self, obligations: Sequence[Obligation]) -> list[VerdictResult]:
        return [self.check(ob) for ob in obligations]


def test_attenuation_needs_the_gate_to_prove_narrowing(tmp_path: Path) -> None:
    SOP.init(tmp_path / "d")
    sop = SOP.boot(tmp_path / "d", now=lambda: NOW, proof_gate=RefusingGate())
    try:
        _, token = sop.admit("drac", ["artifact.persist"], ["artifacts/drac/**"], expires=NOW + 60)
        size = sop.log.size if sop.log else 0
        with pytest.raises(AttenuationError, match="did not prove"):
            sop.attenuate(token, actions=["artifact.persist"], resources=["artifacts/drac/s1/**"])
        assert (sop.log.size if sop.log else 0) == size  # refused before anything was logged
    finally:
        sop.close()


def test_wider_attenuation_is_refused_by_the_gate_with_a_counterexample(tmp_path: Path) -> None:
    SOP.init(tmp_path / "d")
    sop = SOP.boot(tmp_path / "d", now=lambda: NOW)
    try:
        _, token = sop.admit("drac", ["artifact.persist"], ["artifacts/drac/**"], expires=NOW + 60)
        with pytest.raises(AttenuationError, match=r"REFUTED.*counterexample"):
            sop.attenuate(token, actions=["artifact.persist"], resources=["artifacts/**"])
    finally:
        sop.close()


def test_proof_settings_come_from_the_configuration(tmp_path: Path) -> None:
    from sop_verified.core.proofgate import Z3ProofGate
    from sop_verified.nexus.config import DEFAULT_CONFIG

    config = DEFAULT_CONFIG + '\n[proofs]\nrlimit = 200000\ncross_check = ["scope"]\n'
    from sop_verified.nexus.config import init_data_dir

    init_data_dir(tmp_path / "d", config_text=config)
    sop = SOP.boot(tmp_path / "d", now=lambda: NOW)
    try:
        assert isinstance(sop.gate, Z3ProofGate)
        assert sop.gate.config.rlimit == 200_000
        assert sop.gate.config.cross_check == frozenset({"scope"})
    finally:
        sop.close()
