"""The booted kernel over a real data directory: boot, admin plane, bridge, manifest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from attacker import attacker_db

from sop_verified.core.health import Health
from sop_verified.core.request import Permission, Stage
from sop_verified.errors import ConfigError, PolicyError
from sop_verified.nexus.sop import SOP, PolicyRefusedError

NOW = 1_800_000_000

SOUND = """
[roles]
compiler = ["drac"]

[[policy]]
id = "drac-persist"
effect = "permit"
principal = ["role:compiler"]
action = ["artifact.persist"]
resource = ["artifacts/drac/**"]
channel = "bridge"
when = 'context.size_bytes <= 4096'

[[policy]]
id = "no-secrets"
effect = "forbid"
principal = "*"
action = "*"
resource = "*"
when = 'has context.classification && context.classification == "secret"'
"""

# Persists outside the approved scopes: governance must refuse it.
UNSOUND = """
[[policy]]
id = "drac-anywhere"
effect = "permit"
principal = ["drac"]
action = ["artifact.persist"]
resource = "*"
"""

BRIDGE_ADMIN = """
[[policy]]
id = "bridge-admin"
effect = "permit"
principal = "*"
action = ["policy.activate"]
resource = "*"
channel = "bridge"
"""


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.mkdir()
    (path / "policy.toml").write_text(text)
    return path


@pytest.fixture
def sop(tmp_path: Path) -> SOP:
    data = tmp_path / "data"
    SOP.init(data)
    s = SOP.boot(data, now=lambda: NOW)
    assert s.health is Health.READY, s.boot_report
    s.activate_policy(_write(tmp_path, "sound", SOUND))
    return s


def _req(token: str, **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "request_id": "r-1",
        "principal": "drac",
        "action": "artifact.persist",
        "resource": "artifacts/drac/s1/out.bin",
        "capability": token,
        "context": {"size_bytes": 100},
    }
    base.update(kw)
    return base


def _log(s: SOP) -> list[dict[str, object]]:
    assert s.store is not None
    return [json.loads(p) for _, _, p in s.store.log.log_entries()]


def test_allowed_request_end_to_end(sop: SOP) -> None:
    _, token = sop.admit("drac", ["artifact.persist"], ["artifacts/drac/**"], expires=NOW + 60)
    d = sop.submit(_req(token))
    assert d.effect is Permission.ALLOW
    assert _log(sop)[d.log_index or 0]["effect"] == "ALLOW"


def test_forbid_trumps_permit_end_to_end(sop: SOP) -> None:
    _, token = sop.admit("drac", ["artifact.persist"], ["artifacts/drac/**"], expires=NOW + 60)
    d = sop.submit(_req(token, context={"size_bytes": 1, "classification": "secret"}))
    assert d.effect is Permission.DENY
    assert d.reasons[0].policy_ids == ("no-secrets",)


def test_revoked_parent_kills_attenuated_child(sop: SOP) -> None:
    parent, ptoken = sop.admit(
        "drac", ["artifact.persist"], ["artifacts/drac/**"], expires=NOW + 60
    )
    _, ctoken = sop.attenuate(
        ptoken, actions=["artifact.persist"], resources=["artifacts/drac/s1/*"]
    )
    assert sop.submit(_req(ctoken)).effect is Permission.ALLOW
    sop.revoke(parent.id)
    d = sop.submit(_req(ctoken))
    assert (d.effect, d.reasons[0].code) == (Permission.DENY, "revoked")


def test_admin_actions_are_logged_before_their_effect(sop: SOP) -> None:
    sop.admit("drac", ["artifact.persist"], ["artifacts/drac/**"], expires=NOW + 60)
    ops = [e.get("op") for e in _log(sop) if e.get("type") == "admin"]
    assert ops[-2:] == ["capability.admit", "capability.admitted"]


def test_bridge_cannot_change_policy(sop: SOP) -> None:
    before = sop.policy.digest if sop.policy else None
    _, token = sop.admit("drac", ["artifact.persist"], ["artifacts/drac/**"], expires=NOW + 60)
    d = sop.submit(_req(token, action="policy.activate", resource="policies/evil"))
    assert d.effect is Permission.DENY
    assert d.reasons[0].code == "admin_via_bridge"
    assert (sop.policy.digest if sop.policy else None) == before


# Operators' policies for the admin channel: governance accepts them (no admin action
# is permitted on the bridge), so only the kernel keeps bridge callers from claiming them.
ADMIN_CHANNEL = """
[[policy]]
id = "operators-read"
effect = "permit"
principal = ["drac"]
action = ["artifact.read", "artifact.persist"]
resource = ["artifacts/drac/**"]
channel = "admin"

[[policy]]
id = "operators-activate"
effect = "permit"
principal = ["drac"]
action = ["policy.activate"]
resource = "*"
channel = "admin"
"""


@pytest.mark.parametrize(
    ("action", "resource"),
    [("artifact.read", "artifacts/drac/s1/out.bin"), ("policy.activate", "policies/evil")],
)
def test_bridge_cannot_claim_the_admin_channel(
    sop: SOP, tmp_path: Path, action: str, resource: str
) -> None:
    sop.activate_policy(_write(tmp_path, "admin-channel", ADMIN_CHANNEL))
    before = sop.policy.digest if sop.policy else None
    _, token = sop.admit("drac", [action], ["artifacts/drac/**", "policies/**"], expires=NOW + 60)
    claimed = _req(token, action=action, resource=resource, channel="admin", context={})
    d = sop.submit(claimed)
    assert (d.effect, d.reasons[0].stage) == (Permission.DENY, Stage.SCHEMA)
    assert d.reasons[0].code == "admin_channel_via_bridge"
    assert "omit `channel`" in d.reasons[0].message
    assert d.log_index is not None  # recorded, like every decision
    assert _log(sop)[d.log_index]["effect"] == "DENY"
    assert (sop.policy.digest if sop.policy else None) == before
    # the same body on the bridge channel is decided by the bridge's policies
    plain = sop.submit(_req(token, action=action, resource=resource, context={}))
    assert plain.effect is Permission.DENY
    assert plain.reasons[0].code in {"no_permit", "admin_via_bridge"}


@pytest.mark.parametrize(("text", "code"), [(UNSOUND, "persist"), (BRIDGE_ADMIN, "admin")])
def test_unsound_policy_set_is_refused_with_counterexample(
    sop: SOP, tmp_path: Path, text: str, code: str
) -> None:
    before = sop.policy.digest if sop.policy else None
    assert sop.store is not None
    size = sop.store.log.log_size()
    with pytest.raises(PolicyRefusedError) as info:
        sop.activate_policy(_write(tmp_path, "unsound", text))
    errors = info.value.report.errors
    assert errors and code in errors[0].code
    assert errors[0].counterexample is not None
    assert (sop.policy.digest if sop.policy else None) == before
    assert sop.store.log.log_size() == size  # nothing recorded, nothing changed


def test_malformed_policy_file_is_refused_and_nothing_changes(sop: SOP, tmp_path: Path) -> None:
    before = sop.policy.digest if sop.policy else None
    with pytest.raises(PolicyError):
        sop.activate_policy(_write(tmp_path, "bad", "[[policy]]\nid = 'x'\neffect = 'permit'\n"))
    assert (sop.policy.digest if sop.policy else None) == before


def test_no_policy_denies_by_default(tmp_path: Path) -> None:
    SOP.init(tmp_path / "d")
    s = SOP.boot(tmp_path / "d", now=lambda: NOW)
    _, token = s.admit("drac", ["artifact.persist"], ["artifacts/drac/**"], expires=NOW + 60)
    d = s.submit(_req(token))
    assert (d.effect, d.reasons[0].code) == (Permission.DENY, "no_policy")


def test_boot_manifest_is_byte_identical_across_boots(sop: SOP) -> None:
    first = (sop.data_dir / "boot-manifest.json").read_bytes()
    sop.close()
    second_sop = SOP.boot(sop.data_dir, now=lambda: NOW)
    second = (sop.data_dir / "boot-manifest.json").read_bytes()
    manifest = json.loads(second)
    assert manifest["policy_digest"] == (second_sop.policy.digest if second_sop.policy else None)
    assert manifest["config_digest"].startswith("sha256:")
    assert manifest["key_ids"]["capability_mac"]
    assert "z3" in manifest["versions"]
    # the first boot had no active policy; boot again to compare like with like
    second_sop.close()
    SOP.boot(sop.data_dir, now=lambda: NOW)
    assert (sop.data_dir / "boot-manifest.json").read_bytes() == second
    assert first != second  # the policy digest changed in between


def test_failed_service_leaves_everything_denied(sop: SOP) -> None:
    _, token = sop.admit("drac", ["artifact.persist"], ["artifacts/drac/**"], expires=NOW + 60)
    sop.close()
    # tamper with the stored policy set: the derived-state check fails at boot (INV-11)
    db = attacker_db(sop.data_dir / "sop.db")
    db.execute("UPDATE policy_sets SET digest = 'sha256:' || hex(zeroblob(32))")
    db.close()
    broken = SOP.boot(sop.data_dir, now=lambda: NOW)
    assert broken.health is Health.FAILED
    assert broken.boot_report is not None and broken.boot_report.failed == "state"
    assert "`policy_sets` does not match its seal" in broken.boot_report.detail
    d = broken.submit(_req(token))
    assert d.effect is Permission.DENY
    assert d.reasons[0].stage is Stage.HEALTH


def test_key_readable_by_others_fails_boot(sop: SOP) -> None:
    sop.close()
    os.chmod(sop.data_dir / "keys" / "capability.key", 0o644)
    broken = SOP.boot(sop.data_dir, now=lambda: NOW)
    assert broken.health is Health.FAILED
    assert broken.boot_report is not None and "readable by others" in broken.boot_report.detail


def test_keys_are_created_private(sop: SOP) -> None:
    mode = (sop.data_dir / "keys" / "capability.key").stat().st_mode & 0o777
    assert mode == 0o600


def test_init_refuses_an_initialised_directory(sop: SOP) -> None:
    with pytest.raises(ConfigError, match="already initialised"):
        SOP.init(sop.data_dir)
