"""A read-only SOP (``SOP.boot(read_only=True)``) decides dry runs and changes no byte."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dir_snapshot import snapshot

from sop_verified.core.health import Health
from sop_verified.core.request import Permission
from sop_verified.errors import ConfigError
from sop_verified.nexus.backends import open_backend
from sop_verified.nexus.config import load_config
from sop_verified.nexus.sop import SOP

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "docs" / "examples" / "policies"

# satisfiable, so REFUTED: an obligation no verdict was recorded for, solved afresh
FRESH = {
    "id": "dry-fresh",
    "format": "smt2",
    "source": "(set-logic QF_LIA)\n(declare-const x Int)\n(assert (> x 5))\n",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A data directory with the example policies active and a capability for DRAC."""
    data = tmp_path_factory.mktemp("ro") / "data"
    SOP.init(data)
    with SOP.boot(data) as sop:
        sop.activate_policy(POLICIES)
        _, token = sop.admit(
            "drac", ["artifact.persist"], ["artifacts/drac/**"], expires=sop.now() + 86_400
        )
    return data, token


def _request(token: str, **extra: Any) -> dict[str, Any]:
    return {
        "request_id": "dry-1",
        "principal": "drac",
        "action": "artifact.persist",
        "resource": "artifacts/drac/plan.json",
        "capability": token,
        "context": {"size_bytes": 5},
        **extra,
    }


def test_dry_run_changes_no_byte_of_the_data_directory(served: tuple[Path, str]) -> None:
    data, token = served
    before = snapshot(data)
    with SOP.boot(data, read_only=True) as sop:
        assert sop.health is Health.READY, sop.boot_report.detail
        allowed = sop.dry_run(_request(token))
        refuted = sop.dry_run(_request(token, obligations=[FRESH]))
        denied = sop.dry_run(_request(token, resource="artifacts/emp/x.json"))
    assert snapshot(data) == before
    assert (allowed.effect, allowed.dry_run, allowed.log_index) == (Permission.ALLOW, True, None)
    assert allowed.receipt is None and allowed.to_dict()["dry_run"] is True
    assert refuted.effect is Permission.DENY  # solved afresh, kept in memory only
    assert refuted.reasons[0].code == "obligation_refuted"
    assert denied.effect is Permission.DENY and denied.dry_run


def test_dry_run_decides_as_a_logged_submit_does(served: tuple[Path, str]) -> None:
    data, token = served
    requests = [
        _request(token),
        _request(token, resource="artifacts/emp/x.json"),
        _request(token, context={"size_bytes": 50_000_000}),
        _request("sopcap1.forged.e30.AAAA"),
    ]
    with SOP.boot(data, read_only=True) as sop:
        dry = [sop.dry_run(r) for r in requests]
    with SOP.boot(data) as sop:
        real = [sop.submit(r) for r in requests]
    for d, r in zip(dry, real, strict=True):
        assert (d.effect, d.reasons, d.policy_ids) == (r.effect, r.reasons, r.policy_ids)
        assert d.log_index is None and r.log_index is not None


def test_a_read_only_sop_logs_nothing_so_submit_denies(served: tuple[Path, str]) -> None:
    data, token = served
    before = snapshot(data)
    with SOP.boot(data, read_only=True) as sop:  # READY beside the decisions left pending
        assert sop.health is Health.READY, sop.boot_report.detail
        decision = sop.submit(_request(token))
    assert decision.effect is Permission.DENY
    assert decision.reasons[-1].code == "log_append_failed"
    assert "read-only" in decision.reasons[-1].message
    assert snapshot(data) == before


def test_read_only_open_of_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    SOP.init(data)  # configuration and keys, no database yet
    (data / "sop.db").unlink(missing_ok=True)
    before = snapshot(data)
    with SOP.boot(data, read_only=True) as sop:
        assert sop.health is not Health.READY
        assert "no sqlite store" in sop.boot_report.detail
        assert sop.dry_run(_request("t")).effect is Permission.DENY
    assert snapshot(data) == before


def test_read_only_is_refused_for_postgresql(tmp_path: Path) -> None:
    from sop_verified.nexus.config import postgres_config

    data = tmp_path / "data"
    data.mkdir()
    (data / "sop.toml").write_text(postgres_config("postgresql://127.0.0.1:1/none", "sop"))
    config = load_config(data)
    with pytest.raises(ConfigError, match="built for SQLite data directories only"):
        open_backend(data, config, state_key=b"k" * 32, read_only=True)
