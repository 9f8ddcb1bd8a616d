"""CSP through ``sop.csp``: eligibility by policy, sealed snapshots, resume with lineage (INV-7)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest
from protocol_env import Env, make_env

from sop_verified.core.request import Decision, Permission, Stage
from sop_verified.errors import ProtocolError
from sop_verified.protocols.csp import Manifest, SnapshotBook
from sop_verified.protocols.requests import bridge_request
from sop_verified.tools.attest import verify_envelope
from sop_verified.tools.canonical import canonical_json
from sop_verified.tools.merkle import root_hash
from sop_verified.tools.tlog_receipt import verify_bundle


def _blob(env: Env, data: bytes) -> str:
    d = env.sop.csp.put_blob(data, state_class="working", token=env.csp)
    assert d.allowed, d.reasons
    return str(d.write.digest)


def _seal(env: Env, session: str, entries: dict[str, str], parent: str | None) -> str:
    d = env.sop.csp.seal(session, entries, parent=parent, token=env.csp)
    assert d.allowed, d.reasons
    return str(d.record.snapshot)


def _codes(d: Decision) -> list[str]:
    return [r.code for r in d.reasons]


def test_a_sealed_snapshot_resumes_with_its_state(env: Env) -> None:
    wm, ep = _blob(env, b"working memory"), _blob(env, b"episode 1")
    sealed = env.sop.csp.seal("rt", {"wm": wm, "episodes": ep}, parent=None, token=env.csp)
    assert sealed.allowed, sealed.reasons
    info = sealed.record.to_dict()
    resumed = env.sop.csp.resume("rt", info["snapshot"], token=env.csp)
    assert resumed.allowed, resumed.decision.reasons
    assert resumed.state == {"wm": b"working memory", "episodes": b"episode 1"}
    assert resumed.manifest is not None and resumed.manifest.snapshot_id() == info["snapshot"]
    assert resumed.decision.record.receipt.index > info["seal_index"]
    assert sealed.to_dict()["snapshot"] == info  # the JSON form
    resume_json = resumed.decision.to_dict()["snapshot"]
    assert resume_json == {**info, "resume_receipt": resumed.decision.record.receipt.to_dict()}


def test_the_seal_is_a_signed_merkle_root_logged_with_its_receipt(env: Env) -> None:
    wm = _blob(env, b"sealed state")
    sealed = env.sop.csp.seal("mr", {"wm": wm}, parent=None, token=env.csp)
    info = sealed.record.to_dict()
    log, key = env.sop.log, env.sop.attestation_key
    assert log is not None and key is not None
    entry = orjson.loads(log.entry(info["seal_index"]))
    assert entry["type"] == "csp.seal"
    statement = verify_envelope(entry["envelope"], key.public_key())
    leaves = [canonical_json({"digest": wm, "key": "wm"})]
    assert statement["predicate"]["merkle_root"] == root_hash(leaves).hex() == info["merkle_root"]
    assert statement["subject"][0]["digest"]["sha256"] == info["manifest_digest"][7:]
    receipt = info["seal_receipt"]
    assert receipt["index"] == info["seal_index"]
    proved = verify_bundle(log.prove(info["seal_index"]), log.verifiers, origin=log.origin)
    assert proved.index == info["seal_index"]


def test_a_manifest_that_references_a_missing_blob_is_refused_and_nothing_written(
    env: Env,
) -> None:
    missing = "sha256:" + "d" * 64
    manifest = env.sop.csp._controller.manifest("mb", {"wm": missing}, None)
    d = env.sop.csp.seal("mb", {"wm": missing}, parent=None, token=env.csp)
    assert d.effect is Permission.DENY
    assert (d.reasons[0].stage, d.reasons[0].code) == (Stage.PROTOCOL, "missing_blob")
    assert d.log_index is not None  # recorded
    persistence = env.sop.persistence
    assert persistence is not None
    name = f"mb/{manifest.snapshot_id()}.json"
    assert persistence.objects("csp-snapshot-manifests", name) == []
    assert persistence._index.pending() == []
    assert env.sop.csp._controller.book.snapshots("mb") == []


def test_a_new_snapshot_must_name_a_parent_of_its_session(env: Env) -> None:
    wm = _blob(env, b"parents")
    root = _seal(env, "pa", {"wm": wm}, None)
    orphan = env.sop.csp.seal("pa", {"wm": wm, "x": wm}, parent=None, token=env.csp)
    assert _codes(orphan)[0] == "parent_required"
    other = _seal(env, "pb", {"wm": wm}, None)
    foreign = env.sop.csp.seal("pa", {"y": wm}, parent=other, token=env.csp)
    assert _codes(foreign)[0] == "unknown_parent"
    assert env.sop.csp.seal("pa", {"z": wm}, parent=root, token=env.csp).allowed


def test_resuming_an_unknown_session_or_snapshot_is_denied(env: Env) -> None:
    wm = _blob(env, b"unknown")
    snap = _seal(env, "uk", {"wm": wm}, None)
    no_session = env.sop.csp.resume("nobody", snap, token=env.csp)
    assert no_session.decision.effect is Permission.DENY and no_session.state is None
    assert _codes(no_session.decision)[0] == "unknown_session"
    assert any(r.code == "obligation_refuted" for r in no_session.decision.reasons)
    ghost = "snap-" + "0" * 32
    no_snapshot = env.sop.csp.resume("uk", ghost, token=env.csp)
    assert _codes(no_snapshot.decision)[0] == "unknown_snapshot"


def test_replaying_an_older_snapshot_after_a_newer_resume_is_denied(env: Env) -> None:
    wm = _blob(env, b"v1")
    s1 = _seal(env, "ln", {"wm": wm}, None)
    s2 = _seal(env, "ln", {"wm": _blob(env, b"v2")}, s1)
    assert env.sop.csp.resume("ln", s2, token=env.csp).allowed
    replay = env.sop.csp.resume("ln", s1, token=env.csp)
    assert replay.decision.effect is Permission.DENY and replay.state is None
    first = replay.decision.reasons[0]
    assert (first.stage, first.code) == (Stage.PROTOCOL, "lineage")
    refuted = [r for r in replay.decision.reasons if r.stage is Stage.OBLIGATION]
    assert refuted and (refuted[0].obligation or "").startswith("lineage:")
    assert env.sop.csp.resume("ln", s2, token=env.csp).allowed  # the same one again is fine


def test_an_operator_authorised_rollback_lets_an_older_snapshot_resume(env: Env) -> None:
    s1 = _seal(env, "rb", {"wm": _blob(env, b"rb1")}, None)
    s2 = _seal(env, "rb", {"wm": _blob(env, b"rb2")}, s1)
    assert env.sop.csp.resume("rb", s2, token=env.csp).allowed
    start = env.log_size()
    env.sop.authorize_rollback("rb", s1)
    assert [e.get("op") for e in env.entries(start)] == ["csp.rollback.authorize"]
    back = env.sop.csp.resume("rb", s1, token=env.csp)
    assert back.allowed, back.decision.reasons
    assert back.state == {"wm": b"rb1"}
    assert env.sop.csp.resume("rb", s2, token=env.csp).allowed  # forward from s1 again


def test_a_revoked_snapshot_and_its_descendants_never_resume(env: Env) -> None:
    s1 = _seal(env, "rv", {"wm": _blob(env, b"rv1")}, None)
    s2 = _seal(env, "rv", {"wm": _blob(env, b"rv2")}, s1)
    env.sop.revoke_snapshot(s1, "poisoned memory")
    for snap in (s1, s2):
        d = env.sop.csp.resume("rv", snap, token=env.csp)
        assert d.decision.effect is Permission.DENY
        assert _codes(d.decision)[0] == "revoked"
        assert "poisoned memory" in d.decision.reasons[0].message


def test_eligibility_is_the_policy_s_by_state_class(tmp_path: Path) -> None:
    policies = """
[[policy]]
id = "working-anywhere"
effect = "permit"
principal = ["csp"]
action = ["state.persist"]
resource = ["state/csp/**", "snapshots/csp/**"]
channel = "bridge"
when = 'has context.state_class && context.state_class == "working"'

[[policy]]
id = "episodic-in-state-only"
effect = "permit"
principal = ["csp"]
action = ["state.persist"]
resource = ["state/csp/**"]
channel = "bridge"
when = 'has context.state_class && context.state_class == "episodic"'
"""
    e = make_env(tmp_path, policies=policies)
    try:
        csp = e.sop.csp
        outcomes = {
            (cls, where): (
                csp.persist_state("agent/x", b"s", state_class=cls, token=e.csp)
                if where == "state"
                else csp.put_blob(cls.encode(), state_class=cls, token=e.csp)
            ).effect
            for cls in ("working", "episodic", "secret")
            for where in ("state", "snapshot")
        }
    finally:
        e.close()
    assert outcomes == {
        ("working", "state"): Permission.ALLOW,
        ("working", "snapshot"): Permission.ALLOW,
        ("episodic", "state"): Permission.ALLOW,
        ("episodic", "snapshot"): Permission.DENY,
        ("secret", "state"): Permission.DENY,
        ("secret", "snapshot"): Permission.DENY,
    }


def test_state_without_a_state_class_is_refused_even_when_the_policy_allows(
    tmp_path: Path,
) -> None:
    lax = """
[[policy]]
id = "csp-anything"
effect = "permit"
principal = ["csp"]
action = ["state.persist"]
resource = ["state/csp/**"]
channel = "bridge"
"""
    e = make_env(tmp_path, policies=lax)
    try:
        request = bridge_request("csp", "state.persist", "state/csp/a/nc", token=e.csp, data=b"x")
        d = e.sop.csp._controller.persist_state(request, b"x")
        assert d.effect is Permission.DENY and d.reasons[0].code == "no_state_class"
        assert e.sop.persistence is not None
        assert e.sop.persistence.objects("csp-state", "a/nc") == []
        assert e.sop.csp.persist_state("a/nc", b"x", state_class="working", token=e.csp).allowed
    finally:
        e.close()


def test_csp_cannot_write_into_drac_s_scope(env: Env) -> None:
    d = env.sop.persist(
        {
            "request_id": "csp-into-drac",
            "principal": "csp",
            "action": "state.persist",
            "resource": "artifacts/drac/sessions/x/SCAN/a",
            "capability": env.csp,
            "context": {"state_class": "working"},
        },
        b"x",
    )
    assert d.effect is Permission.DENY and d.reasons[0].stage is Stage.CAPABILITY


def test_lineage_and_revocations_survive_a_reboot(own_env: Env) -> None:
    env = own_env
    s1 = _seal(env, "db", {"wm": _blob(env, b"db1")}, None)
    s2 = _seal(env, "db", {"wm": _blob(env, b"db2")}, s1)
    s3 = _seal(env, "db", {"wm": _blob(env, b"db3")}, s2)
    assert env.sop.csp.resume("db", s2, token=env.csp).allowed
    env.sop.revoke_snapshot(s3)
    sop = env.reboot()
    assert _codes(sop.csp.resume("db", s1, token=env.csp).decision)[0] == "lineage"
    assert _codes(sop.csp.resume("db", s3, token=env.csp).decision)[0] == "revoked"
    assert sop.csp.resume("db", s2, token=env.csp).state == {"wm": b"db2"}


def test_manifest_ids_are_the_manifest_digest(env: Env) -> None:
    wm = _blob(env, b"ids")
    manifest = Manifest.build(session="id", parent=None, created=1, entries={"wm": wm})
    assert manifest.snapshot_id() == "snap-" + hashlib.sha256(manifest.to_bytes()).hexdigest()[:32]
    assert Manifest.parse(manifest.to_bytes()) == manifest


def test_the_gate_alone_still_denies_a_rollback(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    s1 = _seal(env, "depth", {"wm": _blob(env, b"d1")}, None)
    s2 = _seal(env, "depth", {"wm": _blob(env, b"d2")}, s1)
    assert env.sop.csp.resume("depth", s2, token=env.csp).allowed
    monkeypatch.setattr(SnapshotBook, "check_resume", lambda self, session, snapshot: None)
    replay = env.sop.csp.resume("depth", s1, token=env.csp)  # the plain lineage check is broken
    assert replay.state is None and replay.decision.effect is Permission.DENY
    assert replay.decision.reasons[0].code == "obligation_refuted"  # the lineage obligation


@pytest.mark.parametrize("session", ["a/b", "../x", "", "x" * 300])
def test_a_malformed_session_or_snapshot_is_denied_or_refused(env: Env, session: str) -> None:
    assert env.sop.csp.resume(session, "snap-x", token=env.csp).decision.effect is Permission.DENY
    with pytest.raises(ProtocolError) as info:
        env.sop.csp.seal(session, {"wm": "sha256:" + "1" * 64}, parent=None, token=env.csp)
    assert info.value.code == "bad_manifest"
